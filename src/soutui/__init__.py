"""soutui (搜推): self-hostable deep search and recommendation for e-commerce."""

__version__ = "0.1.0"
