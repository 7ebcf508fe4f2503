"""The op handlers of the state machine, one module per kind of object."""
