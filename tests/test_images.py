"""Engine images: the Dockerfiles pin the same digests as the engine catalog and drop root."""

import re
from pathlib import Path

import pytest

from privend.catalog import engine_catalog

IMAGES = Path(__file__).resolve().parent.parent / "images"


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_dockerfile_base_is_the_catalog_pin(engine):
    text = (IMAGES / engine / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert base == engine_catalog().get(engine).reference


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_dockerfile_runs_as_non_root_and_bakes_weights_only_on_request(engine):
    text = (IMAGES / engine / "Dockerfile").read_text()
    assert re.search(r"^USER 1000:1000$", text, re.MULTILINE)
    assert 'if [ -n "$MODEL_ID" ]' in text
    assert "--mount=type=secret,id=hf_token" in text
    assert "ARG HF_TOKEN" not in text


def test_tgi_bakes_weights_with_the_servers_own_downloader():
    assert "text-generation-server download-weights" in (IMAGES / "tgi" / "Dockerfile").read_text()
