"""Models: the recommender contract (base.py) and one file per model."""
