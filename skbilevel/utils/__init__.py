"""Internal utilities: array-API helpers and scikit-learn compatibility imports."""
