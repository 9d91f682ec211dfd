"""What both tracks' configs share (lakelab.configs.TrackConfig): validation of methods,
hyper-parameters and integers, and the round trips through dicts, JSON files and
fingerprints."""

import json

import numpy as np
import pytest

from lakelab.lm.config import LMConfig
from lakelab.mlp.config import LakeConfig

CONFIGS = [LakeConfig, LMConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_methods_must_be_distinct_registered_names(cls):
    with pytest.raises(ValueError, match=r"methods has duplicates: \['sft', 'sft'\]"):
        cls(methods=("sft", "sft"))
    with pytest.raises(ValueError, match=r"unknown objective 'sftt'; valid: \["):
        cls(methods=("sftt",))
    with pytest.raises(ValueError, match="methods must be a non-empty list of names, got 'sft'"):
        cls(methods="sft")
    with pytest.raises(ValueError, match="methods must be a non-empty list"):
        cls(methods=())
    assert cls(methods=["dpo", "sft"]).methods == ("dpo", "sft")  # a list is kept as a tuple


@pytest.mark.parametrize("cls", CONFIGS)
def test_hparams_are_a_dict_of_dicts_for_chosen_methods_in_range(cls):
    with pytest.raises(ValueError, match=r"hparams must be a dict of dicts, got \[1\]"):
        cls(hparams=[1])
    with pytest.raises(ValueError, match=r"hparams\['dpo'\] must be a dict of values, got 0.5"):
        cls(methods=("dpo",), hparams={"dpo": 0.5})
    with pytest.raises(ValueError, match="hparams given for 'dpo', which is not among methods"):
        cls(methods=("sft",), hparams={"dpo": {"beta": 0.5}})
    with pytest.raises(ValueError, match=r"dpo: beta must be in \(0, inf\), got 0"):
        cls(methods=("dpo",), hparams={"dpo": {"beta": 0}})
    config = cls(methods=("dpo",), hparams={"dpo": {"beta": 0.5}})
    assert config.method_hparams("dpo") == {
        "beta": 0.5,
        "variant": "sigmoid",
        "label_smoothing": 0,
        "f_divergence_type": "reverse_kl",
        "f_alpha_divergence_coef": 0.5,
    }


@pytest.mark.parametrize("cls", CONFIGS)
def test_integers_may_be_numpy_integers_and_are_stored_as_ints(cls):
    config = cls(seeds=np.int64(2), first_seed=np.int32(4))
    assert type(config.seeds) is int and config.seed_list == [4, 5]
    assert json.loads(json.dumps(config.to_dict()))["seeds"] == 2  # survives JSON
    with pytest.raises(ValueError, match="seeds must be a positive integer, got 0"):
        cls(seeds=0)
    with pytest.raises(ValueError, match="seeds must be a positive integer, got True"):
        cls(seeds=True)
    with pytest.raises(ValueError, match=r"first_seed must be a non-negative integer, got 1\.0"):
        cls(first_seed=1.0)


@pytest.mark.parametrize("cls", CONFIGS)
def test_dict_and_file_round_trips(cls, tmp_path):
    config = cls(methods=("sft", "dpo"), seeds=2)
    again = cls.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert cls.from_dict({"seeds": 3}, base=config).methods == ("sft", "dpo")  # over a base
    # the protocol is everything but methods and seeds
    assert config.replace(seeds=5, methods=("sft",)).fingerprint() == config.fingerprint()
    assert config.replace(first_seed=1).fingerprint() != config.fingerprint()
    with pytest.raises(ValueError, match=r"unknown config fields \['sedes'\]; known fields are"):
        cls.from_dict({"sedes": 3})
    with pytest.raises(ValueError, match="a config must be a JSON object of fields, got list"):
        cls.from_dict([1])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"seeds": 4}))
    assert cls.load(path).seeds == 4
    path.write_text("{seeds: 4")
    with pytest.raises(ValueError, match="is not valid JSON"):
        cls.load(path)
    with pytest.raises(ValueError, match=r"cannot read config file .*missing\.json: No such file"):
        cls.load(tmp_path / "missing.json")
