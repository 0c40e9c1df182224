"""``hf:...`` model specs: Hugging Face transformers models built from a local config, never downloaded.

Forms:

- ``hf:path/to/config.json`` or ``hf:path/to/dir`` (holding ``config.json``): the config's
  ``model_type`` picks the config class; the first entry of ``architectures`` (e.g.
  ``LlamaForCausalLM``) picks the model class, so state_dict keys match the checkpoint the config
  came with; a config without ``architectures`` is built with ``AutoModel.from_config``.
- ``hf:bert``, ``hf:gpt2``, ``hf:llama``, ``hf:llama-7b``, ``hf:t5``, ``hf:vit``: built-in configs (see
  ``SHORTCUTS``). The language models are built with their output head, as people use them
  (``GPT2LMHeadModel``, ``LlamaForCausalLM``: Llama-7B has 6,738,415,616 parameters with it,
  6,607,343,616 without); bert, t5 and vit are the base models (``AutoModel.from_config``).
  ``-a architectures=None`` builds the headless base model. The report's title names the class built. Write ``hf:./bert`` for a local directory named like a shortcut.

``--model-arg KEY=VALUE`` overrides config fields before the config is built (so derived fields
such as Llama's ``head_dim`` follow), e.g. ``-a hidden_size=1024 -a "architectures=['LlamaForCausalLM']"``;
an unknown field is an error with the closest names; a dict sets fields of a sub-config and keeps its others
(``-a "vision_config={'image_size': 448}"``). ``use_cache`` is off unless set, so outputs hold
tensors rather than a cache object. The model keeps the dtype the config names (``torch_dtype``),
as ``from_config`` does; override with ``-a dtype=float32``. Configs that need ``trust_remote_code``
(an ``auto_map`` entry) are refused: netscope runs no downloaded code.

Default dummy input, chosen by the model's ``main_input_name``: token ids ``(1, 128)`` within the
vocabulary plus an all-ones int64 ``attention_mask`` (and ``decoder_input_ids`` for encoder-decoders, and
``pixel_values`` for text-and-image models such as CLIP, their text part's vocabulary and positions; for
Llava, PaliGemma and Gemma 3 the ids start with as many image tokens as one image has features, then 128 others
(BLIP-2: its image, and ids that start with its ``num_query_tokens`` image tokens); other families with an image
token, Llava-NeXT and Qwen2-VL, get none: building their input is refused);
``pixel_values`` ``(1, C, H, W)`` from ``num_channels`` / ``image_size`` (``(1, num_frames, C, H, W)`` for video
models); one second of 16 kHz audio for ``input_values`` (``(1, audio_channels, 16000)`` for codecs, AST's
``(1, max_length, num_mel_bins)`` spectrogram, and ``decoder_input_ids`` for Moonshine; SpeechT5's encoder and
decoder without their prenets take hidden states ``(1, 128, hidden_size)``, its speech decoder
``(1, 128, num_mel_bins)`` frames); Whisper's ``input_features`` ``(1, num_mel_bins, 2 * max_source_positions)``
(Wav2Vec2-BERT's ``(1, 128, feature_projection_input_dim)``); ``past_values`` ``(1, context_length,
num_input_channels)``; Perceiver's ``inputs`` ``(1, 128, d_model)`` without a preprocessor, token ids with its text one.
Families whose forward needs more than that get it from ``FAMILY_INPUTS``: Kosmos-2's image mask, Bros's boxes,
X-MOD's ``lang_ids``, CLVP's and UnivNet's spectrograms, the Decision Transformer's trajectory.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from netscope.errors import ModelSpecError
from netscope.inputs import InputSpec, TensorSpec
from netscope.optional import require
from netscope.models.sources import ResolvedModel, register_source
from netscope.models.specs import default_inputs_for

DEFAULT_SEQUENCE_LENGTH = 128
AUDIO_SAMPLES = 16000
# config constructor arguments that are not stored under their own name in to_dict()
EXTRA_CONFIG_KEYS = frozenset({"attn_implementation", "dtype", "torch_dtype"})
POSITION_LIMIT_KEYS = ("max_position_embeddings", "n_positions", "max_target_positions")


@dataclass(frozen=True)
class Shortcut:
    """A built-in config: the transformers config class and the fields that differ from its defaults."""

    config_class: str
    fields: Tuple[Tuple[str, Any], ...] = ()


SHORTCUTS: Dict[str, Shortcut] = {
    "bert": Shortcut("BertConfig"),  # bert-base: 12 layers, hidden 768
    "gpt2": Shortcut("GPT2Config", (("architectures", ["GPT2LMHeadModel"]),)),  # gpt2 small: 12 layers, hidden 768
    # a small Llama (about 29 M parameters) so a summary runs in seconds; override any field with -a
    "llama": Shortcut("LlamaConfig", (
        ("hidden_size", 512), ("intermediate_size", 1376), ("num_hidden_layers", 4),
        ("num_attention_heads", 8), ("num_key_value_heads", 8), ("vocab_size", 32000),
        ("max_position_embeddings", 2048), ("architectures", ["LlamaForCausalLM"]),
    )),
    # Llama-7B's shape (meta-llama/Llama-2-7b-hf's config): run it with --device meta
    "llama-7b": Shortcut("LlamaConfig", (
        ("hidden_size", 4096), ("intermediate_size", 11008), ("num_hidden_layers", 32),
        ("num_attention_heads", 32), ("num_key_value_heads", 32), ("vocab_size", 32000),
        ("max_position_embeddings", 4096), ("rms_norm_eps", 1e-5), ("architectures", ["LlamaForCausalLM"]),
    )),
    "t5": Shortcut("T5Config"),  # t5-small: 6+6 layers, d_model 512
    "vit": Shortcut("ViTConfig"),  # ViT-B/16 at 224x224
}


def import_transformers():
    """The transformers module, or a DependencyError naming the extra to install."""
    return require("transformers", needed_for="hf:... model specs", extra="hf")


@register_source("hf")
def resolve_hf(name: str, model_args: Mapping[str, Any], empty_weights: bool) -> ResolvedModel:
    """Build a transformers model from a shortcut or a local config, with its default dummy input."""
    transformers = import_transformers()
    name = name.strip()
    config_class, fields = _config_fields(transformers, name)
    config = _build_config(config_class, fields, model_args, name)
    model = _build_model(transformers, config, name)
    return ResolvedModel(model, f"hf:{name} ({type(model).__name__})", hf_default_inputs(model, config), source="hf")


def _config_fields(transformers, name: str) -> Tuple[type, Dict[str, Any]]:
    """(config class, fields) for a shortcut name or a local config.json / directory."""
    looks_like_path = name.endswith(".json") or "/" in name or os.sep in name
    if name in SHORTCUTS and not looks_like_path:
        shortcut = SHORTCUTS[name]
        return getattr(transformers, shortcut.config_class), dict(shortcut.fields)
    path = os.path.join(name, "config.json") if os.path.isdir(name) else name
    if not os.path.isfile(path):
        raise ModelSpecError(_not_found_message(name, path))
    fields = _read_config_json(path)
    return _config_class_for(fields, path), fields


def _not_found_message(name: str, path: str) -> str:
    if os.path.isdir(name):
        return (f"hf:{name} is a directory without a config.json; point hf: at the directory that holds "
                "the model's config.json, or at the file itself (hf:path/to/config.json)")
    close = difflib.get_close_matches(name.lower(), list(SHORTCUTS), n=3, cutoff=0.5)  # hf:BERT -> hf:bert
    hint = f" Did you mean hf:{close[0]}?" if close else ""
    return (
        f"hf:{name} is neither a built-in config ({', '.join('hf:' + s for s in SHORTCUTS)}) nor a local "
        f"config file or directory ({path!r} does not exist).{hint} netscope never downloads: for a hub "
        "model, fetch its config.json yourself (e.g. 'huggingface-cli download ORG/NAME config.json') "
        "and pass hf:path/to/config.json"
    )


def _read_config_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            fields = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSpecError(f"cannot read {path} as a JSON config: {exc}") from exc
    if not isinstance(fields, dict):
        raise ModelSpecError(f"{path} holds a JSON {type(fields).__name__}, not a config object")
    fields = _special_floats(fields)
    if fields.get("auto_map"):
        raise ModelSpecError(
            f"{path} has an auto_map entry: the model's code lives outside transformers and would need "
            "trust_remote_code, which netscope never uses. Load the model yourself and pass it to "
            "netscope.summary, or name its module with a package.module:factory spec"
        )
    return fields


_FLOAT_TAGS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _special_floats(value):
    """transformers writes a float JSON cannot hold as ``{"__float__": "Infinity"}`` (Mamba2's ``time_step_limit``)
    and reads it back as the float: so does netscope."""
    if isinstance(value, dict):
        if len(value) == 1 and value.get("__float__") in _FLOAT_TAGS:
            return _FLOAT_TAGS[value["__float__"]]
        return {key: _special_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_special_floats(item) for item in value]
    return value


def _config_class_for(fields: Mapping[str, Any], path: str) -> type:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = fields.get("model_type")
    if not model_type:
        raise ModelSpecError(
            f"{path} has no model_type field, so transformers cannot tell which config class it is; "
            "add it (e.g. \"model_type\": \"llama\")"
        )
    if model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(str(model_type), list(CONFIG_MAPPING.keys()), n=3, cutoff=0.5)
        hint = f" Closest known types: {', '.join(close)}." if close else ""
        raise ModelSpecError(
            f"{path} has model_type {model_type!r}, which this transformers version does not know.{hint} "
            "Upgrade transformers (pip install -U transformers) or fix the field"
        )
    return CONFIG_MAPPING[model_type]


def _build_config(config_class: type, fields: Mapping[str, Any], model_args: Mapping[str, Any], name: str):
    known = _default_fields(config_class) | set(fields) | EXTRA_CONFIG_KEYS
    unknown = [key for key in model_args if key not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelSpecError(
            f"--model-arg {unknown[0]} is not a field of {config_class.__name__} (from hf:{name}).{hint} "
            f"Every field: {config_class.__name__}().to_dict()"
        )
    merged = dict(fields)
    for key, value in model_args.items():  # a dict onto a sub-config's dict sets those fields, keeping the others
        old = merged.get(key)
        merged[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    if "use_cache" not in model_args and "use_cache" in known:
        merged["use_cache"] = False
    try:
        return config_class.from_dict(merged)
    except Exception as exc:
        raise ModelSpecError(
            f"building {config_class.__name__} for hf:{name} raised {type(exc).__name__}: {exc}"
        ) from exc


def _default_fields(config_class: type) -> set:
    """Field names of a default-built config; empty for composite configs that need sub-configs to build."""
    try:
        return set(config_class().to_dict())
    except Exception:
        return set()


def _build_model(transformers, config, name: str):
    architectures = getattr(config, "architectures", None) or []
    builder: Callable = transformers.AutoModel.from_config
    if architectures:
        model_class = getattr(transformers, str(architectures[0]), None)
        if model_class is None or not isinstance(model_class, type):
            raise ModelSpecError(
                f"the config of hf:{name} names architecture {architectures[0]!r}, which this transformers "
                "version does not have; upgrade transformers, or build the base model with "
                "--model-arg architectures=None"
            )
        builder = model_class._from_config  # what AutoModel.from_config calls: honours the config's dtype
    try:
        return builder(config)
    except Exception as exc:
        reason = (str(exc).splitlines() or [""])[0]  # AutoModel's refusal goes on to list every config class
        hint = "" if architectures else (
            f". The config has no architectures entry, so AutoModel picked the class; name the model class "
            f"with -a \"architectures=['...']\" (e.g. {type(config).__name__.replace('Config', 'Model')})")
        raise ModelSpecError(
            f"building the transformers model for hf:{name} raised {type(exc).__name__}: {reason}{hint}"
        ) from exc


def hf_default_inputs(model, config) -> InputSpec:
    """The dummy input a transformers model's forward expects: the family's own builder (``FAMILY_INPUTS``), else
    one chosen by its ``main_input_name``."""
    family = FAMILY_INPUTS.get(getattr(config, "model_type", None))
    return family(model, config) if family is not None else _main_inputs(model, config)


def _main_inputs(model, config) -> InputSpec:
    main_input = getattr(model, "main_input_name", "input_ids")
    builder = MAIN_INPUT_BUILDERS.get(main_input)
    if builder is None:
        return default_inputs_for(model)
    return builder(model, config)


def _token_inputs(model, config) -> InputSpec:
    text = _text_config(config)
    vocab = _vocabulary_size(model, config)
    accepted = set(inspect.signature(model.forward).parameters)
    vision = _vision_config(config)
    images = vision is not None and "pixel_values" in accepted  # a text-and-image model (CLIP, SigLIP, ViLT, ...)
    placeholder = _image_placeholder(config) if images else None
    length = _sequence_length(text, reserved=placeholder[1] if placeholder else 0)
    kwargs: Dict[str, TensorSpec] = {}
    if "attention_mask" in accepted:
        kwargs["attention_mask"] = _attention_mask(length)
    kwargs.update(_decoder_inputs(model, config, accepted))
    if images:
        pixels = _image_inputs(model, vision).args[0]
        token = _image_token(config)
        if placeholder is None and token is not None:  # image tokens netscope cannot count: refused when built
            pixels = dataclasses.replace(pixels, refused=_uncounted_image_tokens(model, config, token, accepted))
        kwargs["pixel_values"] = pixels
    return InputSpec([TensorSpec((1, length), "int64", high=vocab, placeholder=placeholder)], kwargs)


def _attention_mask(length: int) -> TensorSpec:
    """All ones, int64 as tokenizers return it (XLNet computes ``1.0 - attention_mask``, which a bool mask refuses)."""
    return TensorSpec((1, length), "int64", high=2, low=1)


def _image_token(config) -> Optional[int]:
    """The id ``input_ids`` holds where a vision-language model puts an image's features; None without one."""
    token = getattr(config, "image_token_id", None)
    if token is None:
        token = getattr(config, "image_token_index", None)
    return token if isinstance(token, int) else None


def _image_placeholder(config) -> Optional[Tuple[int, int]]:
    """``(image token id, tokens per image)`` for a vision-language model whose forward puts the image's features
    where ``input_ids`` holds its image token (Llava, PaliGemma, Gemma 3) and whose count its config tells
    (``IMAGE_TOKEN_COUNTS``); None otherwise (a family with an image token but not listed is refused when its
    default input is built: :func:`_uncounted_image_tokens`)."""
    token = _image_token(config)
    count = IMAGE_TOKEN_COUNTS.get(getattr(config, "model_type", None))
    if token is None or count is None:
        return None
    return token, count(config)


def _uncounted_image_tokens(model, config, token: int, accepted) -> str:
    """Why netscope makes no default input for a vision-language family whose image token count it cannot tell
    (Llava-NeXT's tiles per image size, Qwen2-VL's patch grid): its forward refuses ids that do not match."""
    extra = [name for name in ("image_sizes", "image_grid_thw") if name in accepted]
    needs = f" and its {' and '.join(extra)}" if extra else ""
    return (f"{type(model).__name__} ({getattr(config, 'model_type', 'this family')}) takes images as image tokens "
            f"(id {token}) in input_ids, as many as its image processor makes for each image{needs}; netscope cannot "
            "build such dummy inputs for this family, and a forward on made-up ones fails. Summarise it from Python "
            "with the inputs its processor returns: netscope.summary(model, input_data={'input_ids': ..., "
            "'pixel_values': ...}) with every tensor the processor gives")


def _patches(vision) -> int:
    return (int(vision.image_size) // int(vision.patch_size)) ** 2


def _llava_image_tokens(config) -> int:
    """Llava: the vision tower's output sequence (patches, plus CLIP's class token), less its first token under
    the ``default`` feature strategy (``full`` keeps all)."""
    vision = config.vision_config
    sequence = _patches(vision) + _CLASS_TOKENS.get(getattr(vision, "model_type", None), 0)
    return sequence - (getattr(config, "vision_feature_select_strategy", "default") == "default")


_CLASS_TOKENS = {"clip_vision_model": 1}  # vision towers whose output starts with a class token

# config model_type -> image placeholder tokens per image, read from the config
IMAGE_TOKEN_COUNTS: Dict[str, Callable[[Any], int]] = {
    "llava": _llava_image_tokens,
    "paligemma": lambda config: getattr(config.text_config, "num_image_tokens", None) or _patches(config.vision_config),
    "gemma3": lambda config: int(config.mm_tokens_per_image),
    "blip-2": lambda config: int(config.num_query_tokens),
}


def _decoder_inputs(model, config, accepted) -> Dict[str, TensorSpec]:
    """``decoder_input_ids`` within the decoder's vocabulary and positions, for an encoder-decoder's forward."""
    if not getattr(config, "is_encoder_decoder", False) or "decoder_input_ids" not in accepted:
        return {}
    length = _sequence_length(_text_config(config))
    return {"decoder_input_ids": TensorSpec((1, length), "int64", high=_decoder_vocabulary_size(model, config))}


def _decoder_vocabulary_size(model, config) -> int:
    """The rows of the decoder's own token embedding (FSMT's target vocabulary differs from its source's)."""
    try:
        decoder = model.get_decoder()
        getter = getattr(decoder, "get_input_embeddings", None)
        embeddings = getter() if getter is not None else getattr(decoder, "embed_tokens", None)
    except (AttributeError, NotImplementedError):
        embeddings = None
    size = getattr(embeddings, "num_embeddings", None)
    return int(size) if size else _vocabulary_size(model, config)


def _image_inputs(model, config) -> InputSpec:
    """``pixel_values``, plus the token ids an image-to-text forward needs (BLIP's captioner's ``input_ids``, a
    vision-encoder-decoder's ``decoder_input_ids``)."""
    vision = config if hasattr(config, "image_size") else _vision_config(config) or config  # SAM, ViT + GPT-2
    size = getattr(vision, "image_size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    channels = getattr(vision, "num_channels", 3)
    frames = getattr(vision, "num_frames", None)  # a video model (VideoMAE, TimeSformer, ViViT): (1, T, C, H, W)
    clip = (int(frames),) if isinstance(frames, int) and not isinstance(frames, bool) else ()
    pixels = TensorSpec((1, *clip, int(channels), int(height), int(width)))
    accepted = set(inspect.signature(model.forward).parameters)
    kwargs = _decoder_inputs(model, config, accepted)
    if "input_ids" in accepted and getattr(config, "text_config", None) is not None:
        placeholder = _image_placeholder(config)  # BLIP-2: its query tokens' outputs go where the image tokens are
        length = _sequence_length(_text_config(config), reserved=placeholder[1] if placeholder else 0)
        kwargs["input_ids"] = TensorSpec((1, length), "int64", high=_vocabulary_size(model, config),
                                         placeholder=placeholder)
    return InputSpec([pixels], kwargs)


def _audio_inputs(model, config) -> InputSpec:
    """``input_values``: one second of 16 kHz audio, ``(1, AUDIO_SAMPLES)``, or ``(1, audio_channels, AUDIO_SAMPLES)``
    for codecs (Encodec, Mimi, DAC), with ``decoder_input_ids`` for an encoder-decoder (Moonshine); a spectrogram where
    the family's config names one (``SPECTROGRAM_VALUES``: AST)."""
    spectrogram = SPECTROGRAM_VALUES.get(getattr(config, "model_type", None))
    if spectrogram is not None:
        return InputSpec([TensorSpec((1, *spectrogram(config)))])
    channels = getattr(config, "audio_channels", MONO_CODECS.get(getattr(config, "model_type", None)))
    samples = TensorSpec((1, channels, AUDIO_SAMPLES) if isinstance(channels, int) else (1, AUDIO_SAMPLES))
    return InputSpec([samples], _decoder_inputs(model, config, set(inspect.signature(model.forward).parameters)))


# config model_type -> audio channels of a codec whose config does not name them (its forward takes (1, C, samples))
MONO_CODECS: Dict[str, int] = {"dac": 1}

# config model_type -> (frames, mel bins) of the spectrogram a family takes as ``input_values``
SPECTROGRAM_VALUES: Dict[str, Callable[[Any], Tuple[int, int]]] = {
    "audio-spectrogram-transformer": lambda config: (int(config.max_length), int(config.num_mel_bins)),
}


def _spectrogram_inputs(model, config) -> InputSpec:
    """Speech features, plus ``decoder_input_ids``: Whisper's ``input_features`` ``(1, num_mel_bins,
    2 * max_source_positions)`` (the encoder's stride-2 convolution halves the frames, and it refuses any other
    length); Speech2Text's ``(1, frames, input_feat_per_channel * input_channels)``, as many frames (at most
    128) as its stride-2 convolutions bring within ``max_source_positions``."""
    kwargs = _decoder_inputs(model, config, set(inspect.signature(model.forward).parameters))
    bins, positions = getattr(config, "num_mel_bins", None), getattr(config, "max_source_positions", None)
    features = getattr(config, "input_feat_per_channel", None)
    if isinstance(bins, int) and isinstance(positions, int):
        return InputSpec([TensorSpec((1, bins, 2 * positions))], kwargs)
    if isinstance(features, int) and isinstance(positions, int):
        frames = min(DEFAULT_SEQUENCE_LENGTH, positions * 2 ** int(getattr(config, "num_conv_layers", 0)))
        return InputSpec([TensorSpec((1, frames, features * int(getattr(config, "input_channels", 1))))], kwargs)
    stacked = getattr(config, "feature_projection_input_dim", None)  # Wav2Vec2-BERT: stacked filterbank frames
    if isinstance(stacked, int):
        return InputSpec([TensorSpec((1, DEFAULT_SEQUENCE_LENGTH, stacked))], kwargs)
    return default_inputs_for(model)


def _time_series_inputs(model, config) -> InputSpec:
    """``past_values`` ``(1, context_length, num_input_channels)`` (PatchTST, PatchTSMixer)."""
    length, channels = getattr(config, "context_length", None), getattr(config, "num_input_channels", None)
    if isinstance(length, int) and isinstance(channels, int):
        return InputSpec([TensorSpec((1, length, channels))])
    return default_inputs_for(model)


def _perceiver_inputs(model, config) -> InputSpec:
    """Perceiver's ``inputs``: token ids for its text preprocessor (``PerceiverForMaskedLM``), images for its image
    ones, and without a preprocessor (``PerceiverModel``) the cross-attention's own input ``(1, 128, d_model)``."""
    base = getattr(model, "perceiver", model)
    preprocessor = getattr(base, "input_preprocessor", None)
    if preprocessor is None and isinstance(getattr(config, "d_model", None), int):
        return InputSpec([TensorSpec((1, _sequence_length(config), config.d_model))])
    if type(preprocessor).__name__ == "PerceiverTextPreprocessor":
        return InputSpec([TensorSpec((1, _sequence_length(config)), "int64", high=_vocabulary_size(model, config))])
    if type(preprocessor).__name__ == "PerceiverImagePreprocessor" and isinstance(getattr(config, "image_size", None), int):
        return InputSpec([TensorSpec((1, 3, config.image_size, config.image_size))])
    return default_inputs_for(model)


MAIN_INPUT_BUILDERS: Dict[str, Callable[[Any, Any], InputSpec]] = {
    "input_ids": _token_inputs,
    "pixel_values": _image_inputs,
    "input_values": _audio_inputs,
    "input_features": _spectrogram_inputs,
    "inputs": _perceiver_inputs,
    "past_values": _time_series_inputs,
}


def _speecht5_inputs(model, config) -> InputSpec:
    """SpeechT5: its encoder and decoder take what their prenets make (``SpeechT5Model`` has none): hidden states
    ``(1, 128, hidden_size)`` without one; the speech decoder prenet's ``decoder_input_values`` are log-mel frames
    ``(1, 128, num_mel_bins)`` (text to speech, speech to speech); with prenets the main input is built as usual."""
    parts = getattr(model, "speecht5", model)
    accepted = set(inspect.signature(model.forward).parameters)
    hidden, length = int(config.hidden_size), DEFAULT_SEQUENCE_LENGTH
    bare = type(getattr(parts, "encoder", None)).__name__ == "SpeechT5EncoderWithoutPrenet"
    spec = InputSpec([TensorSpec((1, length, hidden))]) if bare else _main_inputs(model, config)
    width = {"SpeechT5DecoderWithSpeechPrenet": int(config.num_mel_bins),
             "SpeechT5DecoderWithoutPrenet": hidden}.get(type(getattr(parts, "decoder", None)).__name__)
    if width is None or "decoder_input_values" not in accepted:
        return spec
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "decoder_input_values": TensorSpec((1, length, width))})


def _with_kwargs(spec: InputSpec, model, extra: Dict[str, TensorSpec]) -> InputSpec:
    """``spec`` plus those of ``extra`` the model's forward accepts."""
    accepted = set(inspect.signature(model.forward).parameters)
    return dataclasses.replace(spec, kwargs={**spec.kwargs, **{k: v for k, v in extra.items() if k in accepted}})


def _bros_inputs(model, config) -> InputSpec:
    """Bros: token ids and each token's ``bbox`` ``(1, length, 4)`` (its forward refuses to run without one)."""
    spec = _main_inputs(model, config)
    return _with_kwargs(spec, model, {"bbox": TensorSpec((*spec.args[0].shape, 4))})


def _xmod_inputs(model, config) -> InputSpec:
    """X-MOD: token ids and, unless the config names a ``default_language``, ``lang_ids`` ``(1,)``: the index of one
    of ``config.languages`` (its forward refuses to run without either)."""
    spec = _main_inputs(model, config)
    if getattr(config, "default_language", None) is not None:
        return spec
    return _with_kwargs(spec, model, {"lang_ids": TensorSpec((1,), "int64", high=len(config.languages))})


def _kosmos2_inputs(model, config) -> InputSpec:
    """Kosmos-2: an image, token ids with room for its ``latent_query_num`` image features, and the
    ``image_embeds_position_mask`` that puts them there (ones over those first positions, as its processor's mask
    marks the features' places; without the mask the forward fails)."""
    spec = _image_inputs(model, config)
    features = int(config.latent_query_num)
    length = _sequence_length(_text_config(config), reserved=features)
    vocab = _vocabulary_size(model, config)
    return _with_kwargs(spec, model, {
        "input_ids": TensorSpec((1, length), "int64", high=vocab),
        "image_embeds_position_mask": TensorSpec((1, length), "int64", high=1, placeholder=(1, features)),
        "attention_mask": _attention_mask(length)})


def _clvp_inputs(model, config) -> InputSpec:
    """CLVP: token ids and the speech's log-mel ``input_features`` ``(1, feature_size, 128)`` (its conditioning
    encoder's convolution takes both)."""
    bins = int(config.decoder_config.feature_size)
    spec = _main_inputs(model, config)
    return _with_kwargs(spec, model, {"input_features": TensorSpec((1, bins, DEFAULT_SEQUENCE_LENGTH))})


def _univnet_inputs(model, config) -> InputSpec:
    """UnivNet: a log-mel spectrogram ``(1, 128, num_mel_bins)`` and its ``noise_sequence`` ``(1, 128,
    model_in_channels)`` (given, so the forward draws no random numbers of its own)."""
    length = DEFAULT_SEQUENCE_LENGTH
    return _with_kwargs(InputSpec([TensorSpec((1, length, int(config.num_mel_bins)))]), model,
                        {"noise_sequence": TensorSpec((1, length, int(config.model_in_channels)))})


def _decision_transformer_inputs(model, config) -> InputSpec:
    """Decision Transformer: a trajectory of 128 steps, ``states`` ``(1, 128, state_dim)``, ``actions`` ``(1, 128,
    act_dim)``, ``rewards`` and ``returns_to_go`` ``(1, 128, 1)``, ``timesteps`` below ``max_ep_len`` and an all-ones
    ``attention_mask``."""
    length = min(DEFAULT_SEQUENCE_LENGTH, int(config.max_ep_len))
    return _with_kwargs(InputSpec([TensorSpec((1, length, int(config.state_dim)))]), model, {
        "actions": TensorSpec((1, length, int(config.act_dim))), "rewards": TensorSpec((1, length, 1)),
        "returns_to_go": TensorSpec((1, length, 1)),
        "timesteps": TensorSpec((1, length), "int64", high=int(config.max_ep_len)),
        "attention_mask": _attention_mask(length)})


# config model_type -> the default input of a family whose forward takes more than its main input says
FAMILY_INPUTS: Dict[str, Callable[[Any, Any], InputSpec]] = {
    "speecht5": _speecht5_inputs, "bros": _bros_inputs, "xmod": _xmod_inputs, "kosmos-2": _kosmos2_inputs,
    "clvp": _clvp_inputs, "univnet": _univnet_inputs, "decision_transformer": _decision_transformer_inputs,
}


def _sequence_length(config, reserved: int = 0) -> int:
    """``DEFAULT_SEQUENCE_LENGTH`` tokens (after ``reserved`` ones: image placeholders), within the positions."""
    limits = [getattr(config, key) for key in POSITION_LIMIT_KEYS if isinstance(getattr(config, key, None), int)]
    return min([DEFAULT_SEQUENCE_LENGTH + reserved] + [limit for limit in limits if limit > 0])


def _text_config(config):
    """The config of a model's text part: ``text_config`` of a text-and-image model (CLIP), the ``decoder`` of a
    vision-encoder-decoder, else the config."""
    return getattr(config, "text_config", None) or _sub_config(config, "decoder") or config


def _vision_config(config):
    """The config of a model's image part: ``vision_config`` (CLIP, SAM), the ``encoder`` of a
    vision-encoder-decoder, the config itself where it names an ``image_size`` (ViLT); else None."""
    for part in (getattr(config, "vision_config", None), _sub_config(config, "encoder"), config):
        if part is not None and hasattr(part, "image_size"):
            return part
    return getattr(config, "vision_config", None)


def _sub_config(config, name: str):
    """``config.<name>`` when it is a config of its own (``VisionEncoderDecoderConfig.encoder``), else None."""
    part = getattr(config, name, None)
    return part if hasattr(part, "to_dict") else None


def _vocabulary_size(model, config) -> int:
    try:  # transformers raises NotImplementedError for models with several inputs' embeddings (CLIPModel)
        embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    except NotImplementedError:
        embeddings = None
    size = getattr(embeddings, "num_embeddings", None) or getattr(_text_config(config), "vocab_size", None)
    if not size:
        raise ModelSpecError(
            f"cannot tell the vocabulary size of {type(model).__name__}; pass the token ids yourself "
            "with --input 1,128:int64"
        )
    return int(size)
