"""timm: and hf: model sources: counts against independent oracles, default inputs, errors, offline use."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest

import netscope
from netscope.cli import main
from netscope.errors import DependencyError, ModelSpecError, UsageError
from netscope.models.specs import resolve_model

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY_LLAMA_DIR = os.path.join(DATA, "hf_tiny_llama")
LLAMA_7B_CONFIG = os.path.join(DATA, "hf_llama_7b_config.json")


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_summary_total(resolved) -> int:
    """netscope's own parameter total for a resolved model, from a no-memory summary pass."""
    report = netscope.summary(resolved.module, resolved.inputs, device="meta", label=resolved.label,
                              checks=False, audit_names=False)
    return report.totals.total_params


# ---------------------------------------------------------------- independent oracles


def torchvision_count(name: str) -> int:
    import torchvision

    from netscope.run.no_memory import empty_weights

    with empty_weights():
        return param_count(torchvision.models.get_model(name, weights=None))


def regnetx_200mf_count() -> int:
    """torchvision's RegNet class with the RegNetX-200MF design (Radosavovic et al. 2020, table of X models)."""
    from torchvision.models.regnet import BlockParams, RegNet

    from netscope.run.no_memory import empty_weights

    params = BlockParams.from_init_params(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8)
    with empty_weights():
        return param_count(RegNet(params))


def vit_count(dim: int, depth: int, patch: int = 16, image: int = 224, classes: int = 1000, mlp_ratio: int = 4) -> int:
    tokens = (image // patch) ** 2 + 1
    patch_embed = 3 * patch * patch * dim + dim
    block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) \
        + (dim * mlp_ratio * dim + mlp_ratio * dim) + (mlp_ratio * dim * dim + dim)
    return patch_embed + dim + tokens * dim + depth * block + 2 * dim + dim * classes + classes


TIMM_ORACLES = {
    "resnet18": lambda: torchvision_count("resnet18"),
    "resnet50": lambda: torchvision_count("resnet50"),
    "convnext_tiny": lambda: torchvision_count("convnext_tiny"),
    "efficientnet_b0": lambda: torchvision_count("efficientnet_b0"),
    "mobilenetv3_small_100": lambda: torchvision_count("mobilenet_v3_small"),
    "swin_tiny_patch4_window7_224": lambda: torchvision_count("swin_t"),
    "regnetx_002": regnetx_200mf_count,
    "vit_tiny_patch16_224": lambda: vit_count(192, 12),
    "deit_tiny_patch16_224": lambda: vit_count(192, 12),
    "levit_128s": None,  # no independent build: compared with timm's own full-memory build below
}


# ---------------------------------------------------------------- timm


@pytest.mark.parametrize("name", sorted(TIMM_ORACLES))
def test_timm_parameter_counts_match_oracles(name):
    timm = pytest.importorskip("timm")
    resolved = resolve_model(f"timm:{name}", empty_weights=True)
    model = resolved.module
    assert resolved.source == "timm" and resolved.label == f"timm:{name}"
    assert {p.device.type for p in model.parameters()} == {"meta"}
    built_count = param_count(model)
    assert meta_summary_total(resolved) == built_count
    oracle = TIMM_ORACLES[name]
    if oracle is not None:
        assert built_count == oracle()
    else:  # timm's own model, built normally, with real tensors; and timm's published 7.78 M
        assert built_count == param_count(timm.create_model(name, pretrained=False))
        assert round(built_count / 1e6, 2) == 7.78


def test_timm_default_input_comes_from_pretrained_cfg():
    timm = pytest.importorskip("timm")
    resolved = resolve_model("timm:efficientnet_b3", empty_weights=True)
    expected = tuple(timm.models.get_pretrained_cfg("efficientnet_b3").input_size)
    assert expected != (3, 224, 224)  # proves the size is read, not a fallback
    assert [spec.shape for spec in resolved.inputs.args] == [(1,) + expected]
    assert resolved.inputs.kwargs == {}


@pytest.mark.parametrize("spec, model_args, expected", [
    ("timm:convnext_tiny.fb_in22k_ft_in1k_384", {}, (1, 3, 384, 384)),  # a pretrained tag's own size
    ("timm:resnet18", {"pretrained_cfg_overlay": {"input_size": (3, 160, 160)}}, (1, 3, 160, 160)),
])
def test_timm_tags_and_cfg_overlays_set_the_input(spec, model_args, expected):
    pytest.importorskip("timm")
    resolved = resolve_model(spec, model_args, empty_weights=True)
    assert [s.shape for s in resolved.inputs.args] == [expected]


def test_timm_model_args_reach_the_model_and_the_input():
    pytest.importorskip("timm")
    resolved = resolve_model("timm:vit_tiny_patch16_224", {"img_size": 384, "in_chans": 1, "num_classes": 10},
                             empty_weights=True)
    assert [spec.shape for spec in resolved.inputs.args] == [(1, 1, 384, 384)]
    assert param_count(resolved.module) == vit_count(192, 12, image=384, classes=10) - 2 * 16 * 16 * 192
    report = netscope.summary(resolved.module, resolved.inputs, device="meta", checks=False, audit_names=False)
    assert report.model_output == (1, 10)


def test_timm_unknown_name_suggests_close_names():
    pytest.importorskip("timm")
    with pytest.raises(ModelSpecError) as info:
        resolve_model("timm:resnt18")
    assert "resnet18" in str(info.value) and "list_models" in str(info.value)


@pytest.mark.parametrize("spec, model_args, error", [
    ("timm:resnet18", {"pretrained": True}, UsageError),
    ("timm:hf-hub:timm/resnet18.a1_in1k", {}, ModelSpecError),
    ("timm:resnet18", {"no_such_arg": 1}, ModelSpecError),
])
def test_timm_refuses_downloads_and_bad_args(spec, model_args, error):
    pytest.importorskip("timm")
    with pytest.raises(error):
        resolve_model(spec, model_args)


def test_timm_accepts_pretrained_false():
    pytest.importorskip("timm")
    resolved = resolve_model("timm:resnet18", {"pretrained": False}, empty_weights=True)
    assert param_count(resolved.module) == torchvision_count("resnet18")


# ---------------------------------------------------------------- hf: parameter formulas


def bert_count(vocab=30522, positions=512, types=2, hidden=768, layers=12, intermediate=3072) -> int:
    embeddings = (vocab + positions + types) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * 2 * hidden + (hidden * intermediate + intermediate) \
        + (intermediate * hidden + hidden)
    pooler = hidden * hidden + hidden
    return embeddings + layers * layer + pooler


def gpt2_count(vocab=50257, positions=1024, hidden=768, layers=12) -> int:
    layer = 2 * hidden + (hidden * 3 * hidden + 3 * hidden) + (hidden * hidden + hidden) + 2 * hidden \
        + (hidden * 4 * hidden + 4 * hidden) + (4 * hidden * hidden + hidden)
    return (vocab + positions) * hidden + layers * layer + 2 * hidden


def llama_count(vocab, hidden, layers, heads, kv_heads, intermediate, lm_head: bool) -> int:
    kv_dim = hidden // heads * kv_heads
    layer = 2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * intermediate + 2 * hidden
    return vocab * hidden * (2 if lm_head else 1) + layers * layer + hidden


@pytest.mark.parametrize("spec, model_class, expected", [
    ("hf:bert", "BertModel", bert_count()),
    ("hf:gpt2", "GPT2LMHeadModel", gpt2_count()),  # the LM head is tied to the token embedding: counted once
    ("hf:llama", "LlamaForCausalLM", llama_count(32000, 512, 4, 8, 8, 1376, lm_head=True)),
    ("hf:llama-7b", "LlamaForCausalLM", 6_738_415_616),
])
def test_hf_parameter_counts_match_formulas_and_transformers(spec, model_class, expected):
    pytest.importorskip("transformers")
    resolved = resolve_model(spec, empty_weights=True)
    model = resolved.module
    assert type(model).__name__ == model_class and resolved.source == "hf"
    assert model.num_parameters() == param_count(model) == expected
    assert resolved.label == f"{spec} ({model_class})"  # says plainly which model was built


def test_hf_shortcut_base_model_on_request():
    pytest.importorskip("transformers")
    resolved = resolve_model("hf:llama-7b", {"architectures": None}, empty_weights=True)
    assert type(resolved.module).__name__ == "LlamaModel"
    assert param_count(resolved.module) == llama_count(32000, 4096, 32, 32, 32, 11008, lm_head=False) == 6_607_343_616


def test_hf_local_config_file_and_directory_build_the_listed_architecture():
    pytest.importorskip("transformers")
    expected = llama_count(1000, 64, 2, 4, 2, 172, lm_head=True)
    for spec in (f"hf:{TINY_LLAMA_DIR}", f"hf:{os.path.join(TINY_LLAMA_DIR, 'config.json')}"):
        resolved = resolve_model(spec)
        assert type(resolved.module).__name__ == "LlamaForCausalLM"
        assert resolved.module.num_parameters() == param_count(resolved.module) == expected
        assert resolved.module.config.use_cache is False  # the file says true; outputs stay tensors
        ids = resolved.inputs.args[0]
        assert (ids.shape, ids.dtype, ids.high) == ((1, 64), "int64", 1000)  # capped by max_position_embeddings


def test_hf_llama_7b_config_builds_without_memory():
    pytest.importorskip("transformers")
    import torch

    resolved = resolve_model(f"hf:{LLAMA_7B_CONFIG}", empty_weights=True)
    model = resolved.module
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.num_parameters() == param_count(model) == llama_count(32000, 4096, 32, 32, 32, 11008, lm_head=True)
    assert model.num_parameters() == 6_738_415_616
    tensors = list(model.parameters()) + list(model.buffers())
    assert {t.device.type for t in tensors} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float16}  # the config's torch_dtype


@pytest.mark.parametrize("key, value", [("dtype", "float32"), ("torch_dtype", "bfloat16")])
def test_hf_dtype_override_beats_the_config_file(key, value):
    pytest.importorskip("transformers")
    import torch

    resolved = resolve_model(f"hf:{LLAMA_7B_CONFIG}", {key: value}, empty_weights=True)
    assert {p.dtype for p in resolved.module.parameters()} == {getattr(torch, value)}


def test_hf_model_args_override_config_fields_before_derived_ones():
    pytest.importorskip("transformers")
    resolved = resolve_model("hf:llama", {"hidden_size": 1024, "num_attention_heads": 16, "num_key_value_heads": 4},
                             empty_weights=True)
    attention = resolved.module.model.layers[0].self_attn
    assert tuple(attention.q_proj.weight.shape) == (1024, 1024)
    assert tuple(attention.k_proj.weight.shape) == (4 * 64, 1024)
    assert param_count(resolved.module) == llama_count(32000, 1024, 4, 16, 4, 1376, lm_head=True)


def test_hf_architectures_override_picks_the_head():
    pytest.importorskip("transformers")
    resolved = resolve_model("hf:llama", {"architectures": ["LlamaForCausalLM"]}, empty_weights=True)
    assert type(resolved.module).__name__ == "LlamaForCausalLM"
    assert param_count(resolved.module) == llama_count(32000, 512, 4, 8, 8, 1376, lm_head=True)


def test_hf_default_inputs_follow_the_main_input():
    pytest.importorskip("transformers")
    bert = resolve_model("hf:bert", empty_weights=True).inputs
    assert [(s.shape, s.dtype, s.high) for s in bert.args] == [((1, 128), "int64", 30522)]
    # int64, as tokenizers return it (XLNet's forward refuses a bool mask: tests/test_hf_families.py)
    assert {k: (s.shape, s.dtype) for k, s in bert.kwargs.items()} == {"attention_mask": ((1, 128), "int64")}
    t5 = resolve_model("hf:t5", empty_weights=True).inputs
    assert sorted(t5.kwargs) == ["attention_mask", "decoder_input_ids"]
    assert t5.kwargs["decoder_input_ids"].high == 32128
    vit = resolve_model("hf:vit", {"image_size": 384}, empty_weights=True).inputs
    assert [s.shape for s in vit.args] == [(1, 3, 384, 384)] and vit.kwargs == {}


def test_hf_attention_mask_is_all_ones():
    pytest.importorskip("transformers")
    resolved = resolve_model("hf:bert", empty_weights=True)
    _, kwargs = resolved.inputs.build("cpu")
    assert bool((kwargs["attention_mask"] == 1).all())


@pytest.mark.parametrize("model_args, fragment", [
    ({"hiden_size": 8}, "hidden_size"),
    ({"architectures": ["NoSuchModelForAnything"]}, "NoSuchModelForAnything"),
])
def test_hf_bad_model_args_are_spec_errors(model_args, fragment):
    pytest.importorskip("transformers")
    with pytest.raises(ModelSpecError) as info:
        resolve_model("hf:llama", model_args)
    assert fragment in str(info.value)


@pytest.mark.parametrize("config, fragment", [
    ({"model_type": "llama", "auto_map": {"AutoModel": "modeling_x.XModel"}}, "trust_remote_code"),
    ({"hidden_size": 8}, "model_type"),
    ({"model_type": "lama"}, "llama"),
])
def test_hf_unusable_config_files_are_spec_errors(tmp_path, config, fragment):
    pytest.importorskip("transformers")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ModelSpecError) as info:
        resolve_model(f"hf:{path}")
    assert fragment in str(info.value)


@pytest.mark.parametrize("spec, fragment", [
    ("hf:bret", "hf:bert"),
    ("hf:meta-llama/Llama-2-7b-hf", "never downloads"),
])
def test_hf_unknown_names_say_what_to_do(spec, fragment):
    pytest.importorskip("transformers")
    with pytest.raises(ModelSpecError) as info:
        resolve_model(spec)
    assert fragment in str(info.value)


def test_hf_directory_without_config_is_a_spec_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ModelSpecError, match="config.json"):
        resolve_model(f"hf:{tmp_path}")


def test_sources_never_touch_the_network(monkeypatch):
    pytest.importorskip("timm")
    pytest.importorskip("transformers")

    def refuse(*args, **kwargs):
        raise AssertionError("a model source tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for spec in ("timm:resnet18", "hf:bert", f"hf:{TINY_LLAMA_DIR}", "hf:t5"):
        assert param_count(resolve_model(spec, empty_weights=True).module) > 0


# ---------------------------------------------------------------- missing optional dependencies


@pytest.mark.parametrize("spec, package, extra", [
    ("timm:resnet18", "timm", 'pip install "netscope[timm]"'),
    ("hf:bert", "transformers", 'pip install "netscope[hf]"'),
])
def test_missing_dependency_names_the_extra(monkeypatch, capsys, spec, package, extra):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    with pytest.raises(DependencyError) as info:
        resolve_model(spec)
    assert extra in str(info.value)
    assert main(["summary", spec]) == 2
    err = capsys.readouterr().err
    assert extra in err and "Traceback" not in err


def test_source_modules_import_no_heavy_packages():
    import subprocess

    code = ("import sys, netscope.models.timm, netscope.models.hf; "
            "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- end to end


def test_cli_summary_of_a_timm_model(capsys):
    pytest.importorskip("timm")
    assert main(["summary", "timm:resnet18", "--device", "cpu", "--depth", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "11,689,512" in out and "timm:resnet18" in out


def test_cli_summary_of_an_hf_model_with_model_args(capsys):
    pytest.importorskip("transformers")
    assert main(["summary", "hf:bert", "-a", "num_hidden_layers=2", "--device", "cpu", "--depth", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{bert_count(layers=2):,}" in out


@pytest.mark.parametrize("spec, expected_output", [
    ("hf:bert", {"last_hidden_state": (1, 128, 768), "pooler_output": (1, 768)}),
    ("hf:gpt2", {"logits": (1, 128, 50257)}),
    ("hf:t5", {"last_hidden_state": (1, 128, 512), "encoder_last_hidden_state": (1, 128, 512)}),
])
def test_hf_model_outputs_render_as_their_fields(spec, expected_output):
    pytest.importorskip("transformers")
    layers_arg = {"hf:t5": {"num_layers": 1, "num_decoder_layers": 1}, "hf:gpt2": {"n_layer": 1}}
    resolved = resolve_model(spec, layers_arg.get(spec, {"num_hidden_layers": 1}))
    report = netscope.summary(resolved.module, resolved.inputs, device="cpu", checks=False, audit_names=False)
    assert report.model_output == expected_output
    assert report.totals.total_params == resolved.module.num_parameters()


def test_checkpoint_of_a_compiled_timm_model_loads_into_a_plain_one(tmp_path):
    pytest.importorskip("timm")
    import torch

    trained = resolve_model("timm:resnet18").module
    compiled = torch.compile(trained)  # wraps as _orig_mod.*; nothing compiles until a forward pass
    state = compiled.state_dict()
    assert all(key.startswith("_orig_mod.") for key in state)
    path = tmp_path / "compiled.pt"
    torch.save(state, path)
    fresh = resolve_model("timm:resnet18").module
    assert not torch.equal(fresh.conv1.weight, trained.conv1.weight)  # two random inits differ
    netscope.load(fresh, str(path))
    for key, tensor in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], tensor), key


def test_naming_audit_sees_tied_embeddings_of_an_hf_lm_head():
    pytest.importorskip("transformers")
    resolved = resolve_model("hf:gpt2", {"architectures": ["GPT2LMHeadModel"], "n_layer": 1}, empty_weights=True)
    model = resolved.module
    audit = netscope.audit_names(model)
    assert list(audit.state_dict_keys()) == list(model.state_dict())
    tied = [f for f in audit.findings if f.code == "tied-weights"]
    assert len(tied) == 1
    assert "transformer.wte.weight" in tied[0].message and "lm_head.weight" in tied[0].message
    assert audit.totals.total_params == model.num_parameters() == param_count(model)


def test_hf_decoder_runs_in_no_memory_mode_with_the_same_counts_as_on_cpu():
    """transformers' mask code calls .item(), which meta tensors refuse: the pass is retried with fake tensors."""
    pytest.importorskip("transformers")
    spec = "hf:" + TINY_LLAMA_DIR
    cpu = resolve_model(spec)
    meta = resolve_model(spec, empty_weights=True)
    on_cpu = netscope.summary(cpu.module, cpu.inputs, device="cpu", checks=False, audit_names=False)
    on_meta = netscope.summary(meta.module, meta.inputs, device="meta", checks=False, audit_names=False)
    assert on_meta.totals.total_params == on_cpu.totals.total_params == 218_944
    assert on_meta.totals.total_macs == on_cpu.totals.total_macs > 0
    assert [c.output_shapes for c in on_meta.layers] == [c.output_shapes for c in on_cpu.layers]


# ---------------------------------------------------------------- the registry itself


def test_torchvision_is_a_registered_source_and_the_one_that_resolves_bare_names():
    from netscope.models.sources import SOURCES, bare_name_source

    resolve_model("resnet18")  # loads the built-in sources
    assert {"torchvision", "timm", "hf"} <= set(SOURCES)
    assert bare_name_source().prefix == "torchvision"
    bare, prefixed = resolve_model("resnet18"), resolve_model("torchvision:resnet18")
    assert type(bare.module) is type(prefixed.module)
    assert param_count(bare.module) == param_count(prefixed.module) == torchvision_count("resnet18")
    assert prefixed.source == "torchvision" and prefixed.inputs == bare.inputs


def test_a_source_registered_twice_or_a_second_bare_name_source_is_refused():
    from netscope.models.sources import SOURCES, register_source

    resolve_model("resnet18")
    before = dict(SOURCES)
    with pytest.raises(ValueError, match="registered twice"):
        register_source("timm")(lambda name, args, empty: None)
    with pytest.raises(ValueError, match="bare names"):
        register_source("mine", bare_names=True)(lambda name, args, empty: None)
    assert SOURCES == before


def test_a_new_source_is_one_registration():
    import torch.nn as nn

    from netscope.inputs import InputSpec, TensorSpec
    from netscope.models.sources import SOURCES, ResolvedModel, register_source

    @register_source("toy")
    def resolve_toy(name, model_args, empty_weights):
        width = int(name)
        return ResolvedModel(nn.Linear(width, 2), f"toy:{name}", InputSpec([TensorSpec((1, width))]), source="toy")

    try:
        resolved = resolve_model("toy:7")
        assert resolved.source == "toy" and param_count(resolved.module) == 7 * 2 + 2
        assert main(["summary", "toy:5", "--device", "cpu"]) == 0
    finally:
        SOURCES.pop("toy")


def test_a_wrong_class_name_in_a_file_lists_the_modules_it_defines(tmp_path, capsys):
    """No close match: the error lists the nn.Module classes the file itself defines (not those it imports)."""
    from netscope.cli import main

    source = tmp_path / "zoo.py"
    source.write_text("import torch.nn as nn\nfrom torch.nn import Linear\n"
                      "class Encoder(nn.Module):\n    pass\n"
                      "class Decoder(nn.Module):\n    pass\n"
                      "def build():\n    return Encoder()\n")
    assert main(["summary", f"{source}:Transformer"]) == 2
    err = capsys.readouterr()[1]
    assert "It defines these nn.Module classes: Encoder, Decoder." in err and "Linear" not in err


def test_cli_summary_of_a_bf16_config_runs_in_the_configs_dtype(tmp_path, capsys):
    """The CLI's --dtype defaults to the model's own dtype, as the API's does: a config saved by transformers with
    torch_dtype bfloat16 builds a bf16 model, and the report's parameter bytes are 2 per parameter (it cast the
    pass to float32 and reported 4)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, torch_dtype="bfloat16")
    config.save_pretrained(tmp_path)
    assert main(["summary", f"hf:{tmp_path}", "--device", "cpu", "--input", "1,8:int64", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = transformers.AutoModel.from_config(config)  # no architectures listed: the base model, as netscope builds
    params = sum(p.numel() for p in model.parameters())
    assert data["run"]["dtype"] == "bfloat16" and data["totals"]["total_params"] == params
    assert data["totals"]["param_bytes"] == 2 * params
    assert main(["summary", f"hf:{tmp_path}", "--device", "cpu", "--input", "1,8:int64", "--dtype", "float32",
                 "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["param_bytes"] == 4 * params


def test_hf_config_with_a_float_json_cannot_hold(tmp_path, capsys):
    """transformers' save_pretrained writes Mamba2's time_step_limit (0.0, inf) as [0.0, {"__float__": "Infinity"}];
    from_pretrained reads the float back, and so must hf:. Before, the config refused the tagged object."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Mamba2Config(hidden_size=32, num_hidden_layers=1, vocab_size=64, state_size=8, num_heads=4,
                                       head_dim=16, n_groups=1, architectures=["Mamba2ForCausalLM"])
    config.save_pretrained(tmp_path)
    assert "__float__" in (tmp_path / "config.json").read_text()
    resolved = resolve_model(f"hf:{tmp_path}")
    assert tuple(resolved.module.config.time_step_limit) == tuple(
        transformers.AutoConfig.from_pretrained(tmp_path).time_step_limit) == (0.0, float("inf"))
    assert main(["summary", f"hf:{tmp_path}", "-q"]) == 0, capsys.readouterr().err
