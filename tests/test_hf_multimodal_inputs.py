"""``hf:config.json`` for models whose main input is not plain token ids or one image: CLIP (text and image),
Whisper (a log-mel spectrogram of a fixed length), SAM (the image size in ``vision_config`` only), Speech2Text
(frames by features), ViLT (token ids and an image, one config), BLIP's captioner (an image and token ids), a
vision-encoder-decoder (ViT + GPT-2: the image size in ``encoder``, the decoder's vocabulary and positions), FSMT
(a target vocabulary smaller than the source's), Perceiver (``inputs``: embeddings without a preprocessor, token ids
with the text one). Oracles: the transformers model built from the same
config by transformers itself, run on the default input (it must accept it), its ``parameters()``, and
torch's own formulas (``flop_counter.flop_registry``, summed by a plain dispatch mode: ``FlopCounterMode``'s module
tracker raises on SAM) on that forward (eager attention, so every matmul is one torch counts)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import netscope
from netscope.cli import main
from netscope.models.specs import resolve_model

transformers = pytest.importorskip("transformers")


class _TorchFormulas(TorchDispatchMode):
    """Multiply-adds of every operator torch's flop_counter has a formula for (2 FLOPs each)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **(kwargs or {}), out_val=out)
        return out


def _configs():
    clip = transformers.CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=24),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           image_size=32, patch_size=8), projection_dim=16)
    whisper = transformers.WhisperConfig(
        vocab_size=100, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=40,
        max_source_positions=30, max_target_positions=20, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1)
    sam = transformers.SamConfig(  # an image model whose image size lives in vision_config only
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64, image_size=64,
                           patch_size=16, output_channels=32, global_attn_indexes=[0], window_size=2,
                           num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64,
                                 iou_head_hidden_dim=32))
    speech2text = transformers.Speech2TextConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, input_feat_per_channel=8,
        input_channels=1, num_conv_layers=2, conv_channels=16, conv_kernel_sizes=[5, 5], max_source_positions=20,
        max_target_positions=12)
    vilt = transformers.ViltConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, image_size=32, patch_size=8, max_position_embeddings=10)
    blip = transformers.BlipConfig(
        text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=14, encoder_hidden_size=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=16,
        architectures=["BlipForConditionalGeneration"])
    ved = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               image_size=48, patch_size=8, num_channels=1),
        transformers.GPT2Config(vocab_size=90, n_embd=32, n_layer=1, n_head=2, n_positions=18))
    ved.decoder_start_token_id, ved.pad_token_id = 1, 0
    ved.architectures = ["VisionEncoderDecoderModel"]  # AutoModel has no entry for it
    fsmt = transformers.FSMTConfig(  # a translation model whose target vocabulary is smaller than its source's
        langs=["en", "de"], src_vocab_size=100, tgt_vocab_size=50, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=32, architectures=["FSMTForConditionalGeneration"])
    perceiver = dict(d_model=64, d_latents=64, num_latents=16, num_blocks=1, num_self_attends_per_block=1,
                     vocab_size=100, max_position_embeddings=40)
    perceiver_mlm = transformers.PerceiverConfig(**perceiver, architectures=["PerceiverForMaskedLM"])
    perceiver = transformers.PerceiverConfig(**perceiver, architectures=["PerceiverModel"])
    return {"perceiver": (perceiver, transformers.PerceiverModel),
            "perceiver-mlm": (perceiver_mlm, transformers.PerceiverForMaskedLM),
            "fsmt": (fsmt, transformers.FSMTForConditionalGeneration), "clip": (clip, transformers.CLIPModel), "whisper": (whisper, transformers.WhisperModel),
            "sam": (sam, transformers.SamModel), "speech2text": (speech2text, transformers.Speech2TextModel),
            "vilt": (vilt, transformers.ViltModel), "blip": (blip, transformers.BlipForConditionalGeneration),
            "vision-encoder-decoder": (ved, transformers.VisionEncoderDecoderModel)}


@pytest.mark.parametrize("name", ["perceiver", "perceiver-mlm", "fsmt", "clip", "whisper", "sam", "speech2text", "vilt", "blip", "vision-encoder-decoder"])
def test_default_inputs_run_the_model_and_count_as_torch_does(tmp_path, name, capsys):
    config, model_class = _configs()[name]
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    resolved = resolve_model(spec)
    args, kwargs = resolved.inputs.build("cpu")
    if name == "clip":
        text, vision = config.text_config, config.vision_config
        assert tuple(args[0].shape) == (1, text.max_position_embeddings)
        assert int(args[0].max()) < text.vocab_size
        assert tuple(kwargs["pixel_values"].shape) == (1, vision.num_channels, vision.image_size, vision.image_size)
    elif name == "sam":
        vision = config.vision_config
        assert tuple(args[0].shape) == (1, vision.num_channels, vision.image_size, vision.image_size)
    elif name == "perceiver":  # no preprocessor: the latents cross-attend to (batch, positions, d_model) directly
        assert tuple(args[0].shape) == (1, config.max_position_embeddings, config.d_model)
        assert args[0].is_floating_point()
    elif name == "perceiver-mlm":  # the text preprocessor: token ids within its vocabulary and positions
        assert tuple(args[0].shape) == (1, config.max_position_embeddings)
        assert int(args[0].max()) < config.vocab_size
    elif name == "fsmt":
        assert tuple(kwargs["decoder_input_ids"].shape) == (1, config.max_position_embeddings)
        assert int(kwargs["decoder_input_ids"].max()) < config.tgt_vocab_size < int(args[0].max()) + 1 <= 100
    elif name == "whisper":
        assert tuple(args[0].shape) == (1, config.num_mel_bins, 2 * config.max_source_positions)
        assert tuple(kwargs["decoder_input_ids"].shape) == (1, config.max_target_positions)
    elif name == "speech2text":  # two stride-2 convolutions: 4 frames per encoder position
        assert tuple(args[0].shape) == (1, 4 * config.max_source_positions, config.input_feat_per_channel)
        assert tuple(kwargs["decoder_input_ids"].shape) == (1, config.max_target_positions)
        assert int(kwargs["decoder_input_ids"].max()) < config.vocab_size
    elif name == "vilt":
        assert tuple(args[0].shape) == (1, config.max_position_embeddings)
        assert tuple(kwargs["pixel_values"].shape) == (1, config.num_channels, config.image_size, config.image_size)
    elif name == "blip":
        text, vision = config.text_config, config.vision_config
        # BlipVisionConfig has no num_channels: its patch embedding is Conv2d(3, ...)
        assert tuple(args[0].shape) == (1, 3, vision.image_size, vision.image_size)
        assert tuple(kwargs["input_ids"].shape) == (1, text.max_position_embeddings)
        assert int(kwargs["input_ids"].max()) < text.vocab_size
    else:
        encoder, decoder = config.encoder, config.decoder
        assert tuple(args[0].shape) == (1, encoder.num_channels, encoder.image_size, encoder.image_size)
        assert tuple(kwargs["decoder_input_ids"].shape) == (1, decoder.n_positions)
        assert int(kwargs["decoder_input_ids"].max()) < decoder.vocab_size

    torch.manual_seed(0)
    for part in (config, *(getattr(config, key, None) for key in ("encoder", "decoder", "text_config",
                                                                   "vision_config"))):
        if part is not None:
            part._attn_implementation = "eager"
    oracle = model_class(config).eval()
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(*args, **kwargs)  # transformers' own model accepts the default input
    report = netscope.summary(oracle, input_data=(tuple(args), kwargs), audit_names=False)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 > 0
    assert report.totals.total_params == sum(p.numel() for p in oracle.parameters())
    assert report.totals.total_params == sum(p.numel() for p in resolved.module.parameters())


def test_a_config_automodel_cannot_build_is_one_short_paragraph(tmp_path, capsys):
    """AutoModel's refusal lists every config class it knows (thousands of characters); the error keeps its first
    line and says how to name the class."""
    config = _configs()["vision-encoder-decoder"][0]
    config.architectures = None
    config.save_pretrained(tmp_path)
    assert main(["summary", f"hf:{tmp_path / 'config.json'}", "-q"]) == 2
    err = capsys.readouterr().err
    assert "Unrecognized configuration class" in err and "architectures" in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 600, err
    assert main(["summary", f"hf:{tmp_path / 'config.json'}", "-q", "-a",
                 "architectures=['VisionEncoderDecoderModel']"]) == 0, capsys.readouterr().err


def test_keyword_inputs_without_a_dtype_take_the_default_inputs_dtype(tmp_path, capsys):
    """``--input input_ids=1,9`` names by keyword what the default input gives by position: it stays int64 token
    ids (it was a float tensor, and T5's embedding refused it). Oracle: transformers' T5 on int64 ids of those
    shapes, counted by torch's formulas."""
    import json

    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                   architectures=["T5ForConditionalGeneration"])
    config.save_pretrained(tmp_path)
    assert main(["summary", f"hf:{tmp_path / 'config.json'}", "-q", "-f", "json", "--input", "input_ids=1,9",
                 "--input", "decoder_input_ids=1,4"]) == 0
    data = json.loads(capsys.readouterr().out)
    config._attn_implementation = "eager"
    oracle = transformers.T5ForConditionalGeneration(config).eval()
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(input_ids=torch.randint(0, 100, (1, 9)), decoder_input_ids=torch.randint(0, 100, (1, 4)))
    assert data["totals"]["total_macs"] == counter.flops // 2 > 0
    assert data["layers"][0]["input_shapes"] == [{"input_ids": [1, 9], "decoder_input_ids": [1, 4],
                                                  "attention_mask": [1, 9]}]  # the default mask, sized as the ids


def test_input_ids_alone_keep_the_default_decoder_ids_and_mask_sized_like_them(tmp_path, capsys):
    """``hf:t5 --input 1,9`` gave T5 its ids only: the default ``decoder_input_ids`` (and mask) were dropped and the
    forward failed. They are kept, with the length given, and a note says so. Oracle: transformers' T5 on those
    inputs, counted by torch's formulas."""
    import json

    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                   architectures=["T5ForConditionalGeneration"])
    config.save_pretrained(tmp_path)
    code = main(["summary", f"hf:{tmp_path / 'config.json'}", "-f", "json", "--input", "1,9"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["layers"][0]["input_shapes"] == [[1, 9], {"attention_mask": [1, 9], "decoder_input_ids": [1, 9]}]
    assert any("attention_mask [1, 9], decoder_input_ids [1, 9]" in note for note in data["run"]["notes"])
    config._attn_implementation = "eager"
    oracle = transformers.T5ForConditionalGeneration(config).eval()
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        oracle(torch.randint(0, 100, (1, 9)), attention_mask=torch.ones(1, 9, dtype=torch.bool),
               decoder_input_ids=torch.randint(0, 100, (1, 9)))
    assert data["totals"]["total_macs"] == counter.flops // 2 > 0


def test_completed_inputs_follow_the_main_input_and_keep_a_default_of_another_shape():
    from netscope.inputs import InputSpec, TensorSpec

    defaults = InputSpec([TensorSpec((1, 128), "int64")], {"attention_mask": TensorSpec((1, 128), "bool"),
                                                           "pixel_values": TensorSpec((1, 3, 32, 32))})
    given = InputSpec([TensorSpec((1, 9), "int64")])
    spec, kept = given.completed_by(defaults)
    assert spec.kwargs == {"attention_mask": TensorSpec((1, 9), "bool"), "pixel_values": TensorSpec((1, 3, 32, 32))}
    assert kept == ["attention_mask [1, 9]", "pixel_values [1, 3, 32, 32]"]
    two = InputSpec([TensorSpec((1, 128)), TensorSpec((1, 128))], {"mask": TensorSpec((1, 128), "bool")})
    spec, _ = InputSpec([TensorSpec((1, 9)), TensorSpec((1, 5))]).completed_by(two)
    assert spec.kwargs == {"mask": TensorSpec((1, 9), "bool")}  # it follows the main (first) input
    assert given.completed_by(InputSpec([TensorSpec((1, 128), "int64")])) == (given, [])
    named = InputSpec([], {"attention_mask": TensorSpec((1, 4), "bool")})
    assert named.completed_by(defaults)[0].kwargs["attention_mask"] == TensorSpec((1, 4), "bool")  # given: kept


def test_a_dict_model_arg_sets_fields_of_a_sub_config_and_keeps_the_others(tmp_path, capsys):
    """``-a "encoder={'image_size': 64}"`` on a vision-encoder-decoder's config.json changed the image size and
    silently dropped every other encoder field (a default ViT-B/16 encoder: 86 M parameters instead of 37 k).
    Oracle: transformers' model built from the same config with only that field changed."""
    import json

    config = _configs()["vision-encoder-decoder"][0]
    config.save_pretrained(tmp_path)
    assert main(["summary", f"hf:{tmp_path / 'config.json'}", "-q", "-f", "json", "-a",
                 "encoder={'image_size': 64}"]) == 0
    data = json.loads(capsys.readouterr().out)
    config.encoder.image_size = 64
    oracle = transformers.VisionEncoderDecoderModel(config)
    assert data["totals"]["total_params"] == sum(p.numel() for p in oracle.parameters())
    assert data["layers"][0]["input_shapes"][0] == [1, config.encoder.num_channels, 64, 64]


def _vision_language_configs():
    """Llava (a CLIP tower under the default strategy, a SigLIP tower under 'full'), PaliGemma, Gemma 3: each forward
    puts one image's features where input_ids holds the image token, and refuses a different count."""
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                vocab_size=300, head_dim=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=56,
                  patch_size=14)
    return {
        "llava-clip": transformers.LlavaConfig(text_config=transformers.LlamaConfig(**text), image_token_index=299,
                                               vision_config=transformers.CLIPVisionConfig(**vision)),
        "llava-siglip": transformers.LlavaConfig(text_config=transformers.LlamaConfig(**text), image_token_index=7,
                                                 vision_config=transformers.SiglipVisionConfig(**vision),
                                                 vision_feature_select_strategy="full"),
        "paligemma": transformers.PaliGemmaConfig(text_config=transformers.GemmaConfig(**text), image_token_index=299,
                                                  vision_config=transformers.SiglipVisionConfig(**vision),
                                                  projection_dim=64),
        "gemma3": transformers.Gemma3Config(text_config=transformers.Gemma3TextConfig(**text), image_token_index=299,
                                            vision_config=transformers.SiglipVisionConfig(**vision),
                                            mm_tokens_per_image=4),
    }


@pytest.mark.parametrize("name", ["llava-clip", "llava-siglip", "paligemma", "gemma3"])
def test_vision_language_ids_hold_one_images_placeholder_tokens(tmp_path, name, capsys):
    """Oracles: the model's own image features for the default pixel_values (how many placeholders its forward
    needs), the forward accepting the default input, and torch's formulas on it. Before, the ids were drawn at random
    and every one of these forwards refused them ('Image features and image tokens do not match')."""
    config = _vision_language_configs()[name]
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    assert main(["summary", spec, "-q"]) == 0, capsys.readouterr().err
    resolved = resolve_model(spec)
    args, kwargs = resolved.inputs.build("cpu")
    ids = args[0]
    token = config.image_token_id
    torch.manual_seed(0)
    for part in (config, config.text_config, config.vision_config):
        part._attn_implementation = "eager"  # every attention matmul one torch has a formula for
    model = type(resolved.module)(config).eval()
    with torch.no_grad():
        features = model.get_image_features(pixel_values=kwargs["pixel_values"])
    features = getattr(features, "pooler_output", features)
    features = features[0] if isinstance(features, (list, tuple)) else features
    per_image = features.shape[-2] if features.dim() == 3 else features.shape[0]
    assert int((ids == token).sum()) == per_image
    assert (ids[0, :per_image] == token).all()
    assert ids.shape[-1] - per_image == 128  # the usual text length after them
    assert int(ids.max()) < config.text_config.vocab_size and int(ids.min()) >= 0
    counter = _TorchFormulas()
    with torch.no_grad(), counter:
        model(*args, **kwargs)
    report = netscope.summary(model, input_data=(tuple(args), kwargs), audit_names=False)
    assert not report.partial, report.uncounted_ops()
    assert report.totals.total_macs == counter.flops // 2 > 0


def test_placeholder_ids_avoid_the_token_elsewhere():
    """Every non-placeholder value is drawn from [0, high) without the token, and all of them can come up."""
    from netscope.inputs import TensorSpec

    ids = TensorSpec((4, 2000), "int64", high=6, placeholder=(2, 3)).build("cpu", "float32",
                                                                           torch.Generator().manual_seed(1))
    assert (ids[:, :3] == 2).all()
    assert sorted(ids[:, 3:].unique().tolist()) == [0, 1, 3, 4, 5]


def test_ids_too_short_for_the_image_placeholders_are_one_paragraph(tmp_path, capsys):
    """--input 1,10 for a Llava whose image has 16 features: before, the forward's own refusal (exit 3); now the input is
    named as too short, with a length that fits (exit 2)."""
    config = _vision_language_configs()["llava-clip"]
    config.save_pretrained(tmp_path)
    assert main(["summary", f"hf:{tmp_path}", "--input", "1,10"]) == 2
    err = capsys.readouterr().err
    assert "cannot hold the 16 image placeholder tokens" in err and "--input 1,144" in err
    assert "Traceback" not in err
    assert main(["summary", f"hf:{tmp_path}", "--input", "1,17", "-q"]) == 0  # the smallest that fits runs


def _grid_configs():
    """Llava-NeXT (image tokens per image from its tiles: ``image_sizes``) and Qwen2-VL (from its patch grid:
    ``image_grid_thw``): families whose image token count depends on inputs netscope does not build."""
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                vocab_size=200)
    return {
        "llava_next": transformers.LlavaNextConfig(
            text_config=transformers.LlamaConfig(**text).to_dict(), image_token_index=150,
            vision_config=transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                        num_attention_heads=2, image_size=28, patch_size=14).to_dict(),
            image_grid_pinpoints=[[28, 28], [28, 56]], architectures=["LlavaNextForConditionalGeneration"]),
        "qwen2_vl": transformers.Qwen2VLConfig(
            text_config=dict(text, rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}),
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2,
                               temporal_patch_size=2),
            image_token_id=151, video_token_id=152, vision_start_token_id=153,
            architectures=["Qwen2VLForConditionalGeneration"]),
    }


@pytest.mark.parametrize("name, needs", [("llava_next", "image_sizes"), ("qwen2_vl", "image_grid_thw")])
def test_image_token_families_without_a_count_are_refused_in_one_paragraph(tmp_path, name, needs, capsys):
    """Before: the made-up ids ran, the forward failed deep inside (exit 3, 'NoneType' errors) and the solver then
    probed 300 sizes. Now: exit 2 before any forward, naming what the family needs and the API way; a text
    input given by --input keeps the default image and is refused the same; the model still builds (names)."""
    config = _grid_configs()[name]
    config.save_pretrained(tmp_path)
    spec = f"hf:{tmp_path / 'config.json'}"
    oracle = type(resolve_model(spec).module)(config).eval()
    with pytest.raises(Exception), torch.no_grad():  # the family's own forward refuses made-up ids and image
        oracle(torch.randint(0, 100, (1, 16)), pixel_values=torch.randn(1, 3, 28, 28))
    for argv in (["summary", spec], ["summary", spec, "--input", "1,64"], ["step", spec], ["solve", spec]):
        assert main(argv + ["-q"]) == 2
        err = capsys.readouterr().err
        assert needs in err and "input_data=" in err and f"image tokens (id {config.image_token_id})" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["names", spec, "-q"]) == 0
