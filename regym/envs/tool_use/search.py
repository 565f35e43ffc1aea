"""Search over a local document set: BM25 ranking (``bm25s``) and full-text reads.

BM25 as in Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond" (2009), with bm25s's default k1=1.5, b=0.75. Results are ordered by score,
then by document order, so equal scores never reorder between runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from regym.envs.tool_use.schema import Tool, ToolError

SNIPPET_WORDS = 14
MAX_TOP_K = 10


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str

    def snippet(self) -> str:
        words = self.text.split()
        return " ".join(words[:SNIPPET_WORDS]) + (" ..." if len(words) > SNIPPET_WORDS else "")


class DocumentIndex:
    def __init__(self, documents: Sequence[Document]):
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.documents = list(documents)
        self.by_id = {document.doc_id: document for document in self.documents}
        self.tokenizer = Tokenizer(stopwords="en")
        corpus = [f"{document.title}. {document.text}" for document in self.documents]
        tokens = self.tokenizer.tokenize(corpus, update_vocab=True, return_as="ids", show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def search(self, query: str, top_k: int = 3) -> dict[str, Any]:
        top_k = max(1, min(int(top_k), MAX_TOP_K, len(self.documents)))
        query_tokens = self.tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)
        if not any(query_tokens[0]):
            return {"query": query, "results": []}
        found, scores = self.retriever.retrieve(query_tokens, k=len(self.documents), show_progress=False)
        ranked = sorted(
            ((float(score), int(index)) for index, score in zip(found[0], scores[0], strict=True) if score > 0),
            key=lambda pair: (-pair[0], pair[1]),
        )[:top_k]
        results = []
        for score, index in ranked:
            document = self.documents[index]
            results.append(
                {"doc_id": document.doc_id, "title": document.title, "snippet": document.snippet(),
                 "score": round(score, 4)}
            )
        return {"query": query, "results": results}

    def read(self, doc_id: str) -> dict[str, Any]:
        document = self.by_id.get(doc_id.strip())
        if document is None:
            raise ToolError(f"no document with doc_id {doc_id!r}; use search_documents to find doc_ids")
        return {"doc_id": document.doc_id, "title": document.title, "text": document.text}


def search_tools(index: DocumentIndex) -> list[Tool]:
    return [
        Tool(
            name="search_documents",
            description=(
                f"Keyword search (BM25) over the local document collection ({len(index.documents)} documents). "
                "Returns {\"results\": [{\"doc_id\", \"title\", \"snippet\", \"score\"}]}, best first."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 300},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K,
                              "description": "How many results (default 3)."},
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            function=lambda query, top_k=3: index.search(query, top_k),
        ),
        Tool(
            name="read_document",
            description="Read the full text of one document by its doc_id. Returns {\"doc_id\", \"title\", \"text\"}.",
            parameters={
                "type": "object",
                "properties": {"doc_id": {"type": "string", "minLength": 1, "maxLength": 100}},
                "required": ["doc_id"],
                "additionalProperties": False,
            },
            function=lambda doc_id: index.read(doc_id),
        ),
    ]
