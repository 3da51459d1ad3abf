"""The fault suite (``make chaos``): faults repeated many times against real targets, with the
recovery time and the rules left per fault. See ``registry.py`` to add a suite of faults."""
