"""Small command-line tools; run them from the repository root as python tools/NAME.py."""
