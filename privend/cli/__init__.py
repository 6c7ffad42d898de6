"""The `privend` command line."""
