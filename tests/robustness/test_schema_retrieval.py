"""The LLM app's OpenAPI schema, fuzzed (schemathesis) against the real server, as
tests/robustness/test_schema.py does for the CLIP app: whatever a client sends to the embed,
index, retrieve and generation routes, the answer is never a 5xx and every error carries the JSON error
body. Some cases name the registered prompt and an existing index in place of what was
generated, so the fuzzed texts, ids and options reach the tokenizer, the model and the index
engine, not only the first lookup."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from conftest import LLM_ADMIN
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from test_schema import CHECKS, _config

MAX_EXAMPLES = int(os.environ.get("PROMPTSERVE_FUZZ_EXAMPLES", "30")) // 2
INDEX = "fuzz-ix"


def _load() -> Any:
    pytest.importorskip("ray")
    from promptserve.models.llm.serve.gateway import api

    return api.openapi()


def _with_real_names(schema: Any) -> Any:
    @schema.hook
    def before_generate_case(context, strategy):
        def swap(pair):
            case, real = pair
            if not real:
                return case
            if case.path_parameters and "index_id" in case.path_parameters:
                case.path_parameters["index_id"] = INDEX
            if isinstance(case.body, dict):
                if "prompt_id" in case.body and case.operation.path != "/v1/indexes":
                    case.body["prompt_id"] = "reps"
                if "index_id" in case.body and case.operation.path == "/v1/retrieve":
                    case.body["index_id"] = INDEX
                if "model" in case.body:  # generation: the backbone, a few tokens
                    case.body["model"] = "base"
                    if isinstance(case.body.get("max_tokens"), int):
                        case.body["max_tokens"] = min(case.body["max_tokens"], 8)
            return case

        return st.tuples(strategy, st.booleans()).map(swap)

    return schema


schema = _with_real_names(schemathesis.openapi.from_dict(_load(), config=_config(MAX_EXAMPLES)))


@pytest.fixture(scope="module")
def fuzz_index(llm_server):
    from promptserve import Client

    with Client(llm_server["url"], api_key=LLM_ADMIN) as client:
        if INDEX not in {i.index_id for i in client.list_indexes()}:
            client.create_index(INDEX, prompt_id="reps")
        client.index_documents([("a", "volcano lava"), ("b", "glacier ice")], index_id=INDEX)
    return llm_server


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_retrieval_operation(case, fuzz_index):
    headers = {"Authorization": f"Bearer {LLM_ADMIN}"}
    case.call_and_validate(base_url=fuzz_index["url"], headers=headers, checks=CHECKS)
