"""Python inference API."""
