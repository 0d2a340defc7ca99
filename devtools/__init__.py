"""Development tools for vinyl (not part of the distribution)."""
