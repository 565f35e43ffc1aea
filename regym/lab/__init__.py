"""Experiments built only from regym's public parts (``regym lab ...``)."""
