"""The search index: OpenSearch through opensearch-py — everything about it lives in this package.

- this module: :class:`SearchStore` (the client, read-only by construction or a writer);
- :mod:`.transport`: the transports (a deadline per request, writes refused for readers,
  driver errors translated at the boundary);
- :mod:`.reading`: point-in-time pages, (id, content_hash) streams, the digest;
- :mod:`.indices`: the versioned indices, their ``_meta`` state, the alias swap, pruning;
- :mod:`.bulk`: the bounded bulk loader with push-back (429) handling.
"""

from __future__ import annotations

from typing import ClassVar

from opensearchpy import OpenSearch

from kfm_ops.identity import Identity
from kfm_ops.settings import SearchSettings
from kfm_ops.stores.base import Store
from kfm_ops.stores.search.transport import DeadlineTransport, FastJSONSerializer, ReadOnlyTransport


class SearchStore(Store[SearchSettings]):
    """An opensearch-py client whose transport translates driver errors and, for readers, refuses writes."""

    service: ClassVar[str] = "search"
    label: ClassVar[str] = "opensearch"

    def __init__(self, section: SearchSettings, *, write: bool = False) -> None:
        super().__init__(section, write=write)
        username, secret = ((section.write_username, section.write_password)
                            if write and section.write_username else (section.username, section.password))
        auth = (username, secret.get_secret_value()) if username and secret else None
        tls = {}
        if section.ca_file:
            tls["ca_certs"] = str(section.ca_file)
        if section.client_cert and section.client_key:
            tls.update(client_cert=str(section.client_cert), client_key=str(section.client_key))
        self.client = OpenSearch(
            hosts=[section.url],
            http_auth=auth,
            verify_certs=section.verify_certs,
            **tls,
            timeout=section.query_timeout,
            # Writers retry what OpenSearch says is temporary: 429 (bulk queue full) and 502/503/504.
            max_retries=3 if write else 0,
            retry_on_status=(429, 502, 503, 504),
            retry_on_timeout=write,
            transport_class=DeadlineTransport if write else ReadOnlyTransport,
            serializer=FastJSONSerializer(),
        )
        transport = self.client.transport
        assert isinstance(transport, DeadlineTransport)
        transport.deadline = section.query_timeout
        transport.boundary = (self.service, self.address)

    def identity(self, index: str) -> Identity | None:
        """The deployment stamp in the ``_meta`` of the identity index, if the index exists."""
        if not self.client.indices.exists(index=index):
            return None
        mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
        return Identity.from_fields((mapping.get("_meta") or {}).get("kfm_identity"))

    def stamp(self, index: str, identity: Identity, run_id: str) -> None:
        """Write the deployment stamp (a writer store): a document-less index whose ``_meta`` carries it."""
        meta = {"kfm_identity": {**identity.as_fields(), "stamped_by": run_id}}
        if self.client.indices.exists(index=index):
            self.client.indices.put_mapping(index=index, body={"_meta": meta})
        else:
            self.client.indices.create(index=index, body={
                # on every data node: the stamp outlives any one node, and a single node stays green
                "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-all"},
                "mappings": {"dynamic": "strict", "properties": {}, "_meta": meta}})

    def ping(self) -> None:
        self.client.info()

    def version(self) -> str:
        info = self.client.info()
        return f"{info['version'].get('distribution', 'opensearch')} {info['version']['number']}"

    def close(self) -> None:
        self.client.close()
