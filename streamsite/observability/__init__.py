"""What operators see of the running site: the admin's live dashboard (``live``)."""
