"""Pure core: numpy + scikit-learn only. Arrays in, typed frozen results out."""
