"""Backends run a study's trials: ``local`` in this process (Ray Tune comes next)."""
