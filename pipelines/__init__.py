"""Pipeline stages: each owns its I/O and the Spark session, and composes the features and models libraries."""
