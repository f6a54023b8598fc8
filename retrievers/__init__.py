"""First-stage retrievers (BM25 on Lucene, SPLADE, dense on faiss, fusion); see the retrievers issue."""
