"""Pure decisions of the local backend: no I/O, no clock; the controller calls them."""
