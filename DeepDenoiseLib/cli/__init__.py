"""The ``deepdenoise`` command line."""
