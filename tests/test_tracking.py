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


def test_a_trial_run_is_found_by_its_study_and_number_whatever_the_study_is_called(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    names = ["search-20261128-044200", "it's a study", 'say "wide"', "back\\slash", "it\\'s"]
    runs = {(name, number): tracker.start_run(f"trial-{number}", tags={"phase": "proxy", "study": name,
                                                                       "trial": number})
            for name in names for number in (3, 13)}
    tracker.start_run("full-1", tags={"phase": "full", "study": names[0], "trial": 3})  # not a trial's run
    for (name, number), run_id in runs.items():
        assert tracker.trial_run(name, number) == run_id, (name, number)
    assert tracker.trial_run("it", 3) is None and tracker.trial_run(names[1], 4) is None
