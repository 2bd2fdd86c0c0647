"""Files actlab writes: atomically (a temporary name, then a rename) and, for JSON, strictly."""
