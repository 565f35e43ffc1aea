"""The shop's search box: BM25 over each product's title, type and attributes.

WebShop ranks with a Pyserini (Lucene BM25) index over product text and shows the
top 50 results, 10 per page (``web_agent_site/engine/engine.py``,
``get_top_n_product_from_keywords``). regym uses ``bm25s`` (Lucene's BM25 variant,
k1=1.5, b=0.75) over the same kind of text, with English stop words and a light
plural folding so "jackets" finds "jacket". Ties break by catalog order, so a query
always returns the same ranking.
"""

from __future__ import annotations

import bm25s
import numpy as np

from regym.envs.webshop.catalog import Catalog, Product

TOP_N = 50
RESULTS_PER_PAGE = 10


def _fold_plural(word: str) -> str:
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def _stem(words: list[str]) -> list[str]:
    return [_fold_plural(word) for word in words]


def product_document(product: Product) -> str:
    """The text a product is found by (title, type, category, attributes)."""
    return " ".join([product.title, product.product_type, product.category, *product.attributes])


class SearchEngine:
    """A BM25 index over a catalog; safe to query from many threads (read-only arrays)."""

    def __init__(self, catalog: Catalog, top_n: int = TOP_N):
        self.catalog = catalog
        self.top_n = top_n
        corpus = [product_document(p) for p in catalog.products]
        tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=_stem, show_progress=False)
        self.retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        self.retriever.index(tokens, show_progress=False)
        self._vocabulary = self.retriever.vocab_dict

    def query_tokens(self, query: str) -> list[str]:
        words = bm25s.tokenize([query], stopwords="en", stemmer=_stem, return_ids=False, show_progress=False)[
            0
        ]
        return [w for w in words if w in self._vocabulary]

    def search(self, query: str) -> list[Product]:
        """The top ``top_n`` products for ``query``, best first; only products sharing a word with it."""
        tokens = self.query_tokens(query)
        if not tokens:
            return []
        scores = np.asarray(self.retriever.get_scores(tokens), dtype=np.float64)
        order = np.lexsort((np.arange(len(scores)), -scores))
        hits = [int(i) for i in order[: self.top_n] if scores[i] > 0]
        return [self.catalog.products[i] for i in hits]
