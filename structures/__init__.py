"""Box and keypoint geometry shared by transforms, models and metrics; tensor <-> array conversion."""
