"""Pictures and charts: skeletons drawn on images and mosaics (``drawing``), a training batch as the network
gets it (``batch_picture``), validation predictions over the ground truth (``prediction_pictures``) and
line charts with matplotlib (``curves``: results.png, ``tools/plot_curves.py``).

Above codec/models/datasets/evaluation (it draws what they produce), below the engine (which reports with
it)."""
