"""Errors raised by feature code for bad input data or specs; messages name the column and what to do."""


class FeatureError(ValueError):
    """The data or the feature spec cannot be featurized as asked."""
