"""mathforge: the command line and shared configuration helpers; the work lives in the sibling packages."""

__version__ = "0.1.0"
