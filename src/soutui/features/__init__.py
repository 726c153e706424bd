"""Features: vocabularies, text normalisation + jieba, cached text embeddings."""
