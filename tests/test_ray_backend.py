"""Ray backend pieces that need no cluster: token lookup, tracking check, GPU warning, trial params."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import ray

from search.backends import ray_tune
from search.config import Config, ConfigError, RayConfig, SpaceConfig, StoreConfig
from search.space import candidate_from


def test_the_token_comes_from_the_environment_then_the_token_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ray_tune.find_auth_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert ray_tune.find_auth_token() == "from-home"
    (tmp_path / "elsewhere").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert ray_tune.find_auth_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert ray_tune.find_auth_token() == "from-env"


def cluster_config(tmp_path: Path, tracking_uri: str | None = None) -> Config:
    return Config(ray=RayConfig(address="auto"), store=StoreConfig(path=tmp_path, tracking_uri=tracking_uri))


def test_a_cluster_with_other_nodes_refuses_the_local_tracking_store(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [{"NodeManagerAddress": "127.0.0.1", "Alive": True}, {"NodeManagerAddress": "10.1.2.3", "Alive": True},
             {"NodeManagerAddress": "10.9.9.9", "Alive": False}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)  # what a two-machine cluster reports
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    with pytest.raises(ConfigError, match=r"workers on 10\.1\.2\.3 cannot write the local tracking store.*deploy/"):
        ray_tune.check_tracking_reachable(cluster_config(tmp_path))
    ray_tune.check_tracking_reachable(cluster_config(tmp_path, "http://mlflow:5000"))  # a server: fine
    monkeypatch.setattr(ray, "nodes", lambda: nodes[:1])
    ray_tune.check_tracking_reachable(cluster_config(tmp_path))  # one machine: the SQLite store is fine


def test_fractional_gpus_warn_whole_ones_do_not() -> None:
    said: list[str] = []
    for gpus in (0.0, 1.0, 2.0, 0.25):
        ray_tune.warn_fractional_gpus(Config(ray=RayConfig(gpus_per_trial=gpus)), said.append)
    assert len(said) == 1 and "0.25" in said[0] and "without isolation" in said[0] and "about 4 trials" in said[0]


def test_tune_params_become_the_same_candidate_as_the_local_backend_builds() -> None:
    space = SpaceConfig(layers=3, frozen_layers=(1, 2))
    candidate = candidate_from({"width_1": 8, "width_2": 16, "width_3": 24, "frozen_layers": 2}, space)
    assert candidate.widths == (8, 16, 24) and candidate.frozen_layers == 2
    fixed = replace(space, frozen_layers=(1,))
    assert candidate_from({"width_1": 8, "width_2": 16, "width_3": 24}, fixed).frozen_layers == 1
