"""Django's own test suite run against vinyl (``make django-suite``; see run.py).

Not part of vinyl's pytest suite: nothing here is named ``test_*``.
"""
