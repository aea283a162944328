"""The MLflow store as a user opens it."""

from pathlib import Path

from mlflow import MlflowClient

from search.tracking import EXPERIMENT, Tracker


def test_the_experiment_is_tagged_as_training_on_a_new_and_an_existing_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, tmp_path / "artifacts")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # A store made before the tag existed (or changed by hand) gets it when a command opens it.
    client.delete_experiment_tag(experiment.experiment_id, "mlflow.experimentKind")
    assert "mlflow.experimentKind" not in client.get_experiment(experiment.experiment_id).tags
    Tracker(uri, tmp_path / "artifacts")
    assert client.get_experiment(experiment.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
