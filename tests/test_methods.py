"""The method registry: declared parameters, lookup errors, the default."""

import json

import pytest

import napari_denoise as nd
from napari_denoise.engine.methods import default_method, get_method, list_methods
from napari_denoise.errors import ParameterError, UnknownMethodError

CLASSICAL = {"gaussian", "box", "box3d", "median", "nlm", "tv", "wavelet", "bilateral", "bm3d"}


def test_all_classical_filters_are_registered_with_json_descriptions():
    names = {m.name for m in list_methods(kind="classical")}
    assert CLASSICAL <= names
    described = json.loads(json.dumps([m.describe() for m in list_methods()]))
    for d in described:
        assert {"name", "kind", "default", "params"} <= set(d)
        assert d["kind"] in ("classical", "model")


def test_exactly_one_default_and_it_is_what_denoise_uses():
    defaults = [m for m in list_methods() if m.is_default]
    assert len(defaults) == 1
    assert defaults[0] is default_method()


def test_unknown_method_suggests_close_names():
    with pytest.raises(UnknownMethodError, match="Did you mean 'gaussian'"):
        get_method("gausian")
    with pytest.raises(UnknownMethodError):
        nd.denoise([[1.0, 2.0, 3.0]] * 3, "no-such-method")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"sigmaa": 1}, "has no parameter 'sigmaa'. Its parameters are: sigma, vst"),
        ({"sigma": "wide"}, "must be of type float"),
        ({"sigma": -1}, "must be at least"),
        ({"vst": "maybe"}, "must be of type bool"),
    ],
)
def test_bad_parameters_name_the_problem(params, words):
    with pytest.raises(ParameterError, match=words):
        get_method("gaussian").resolve_params(params)


def test_cli_strings_are_converted_and_auto_stays_automatic():
    m = get_method("median")
    assert m.resolve_params({"size": "5", "vst": "true"}) == {"size": 5, "vst": True}
    assert m.resolve_params({"size": "auto"})["size"] is None
    with pytest.raises(ParameterError, match="one of"):
        get_method("wavelet").resolve_params({"wavelet": "haar2"})


def test_ranked_methods_lead_their_kind_so_the_default_comes_first():
    methods = list_methods()
    kinds = [m.kind == "model" for m in methods]
    assert kinds == sorted(kinds, reverse=True)  # models, then classical filters
    same_kind = [m for m in methods if m.kind == default_method().kind]
    assert same_kind[0] is default_method()
