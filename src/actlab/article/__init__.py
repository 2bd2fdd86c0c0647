"""The article and the literature: the claims with their quotes, published reference results,
the model zoo, and the verdict vocabulary."""
