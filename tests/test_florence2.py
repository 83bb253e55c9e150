"""Florence-2 on a tiny random model built offline and loaded through the real weights path."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Florence2ForConditionalGeneration

import zoo
from zoo_florence2 import DESCRIBE_TASKS, DETECT_TASKS, detections


@pytest.fixture
def tiny(florence2_tiny):
    return florence2_tiny


@pytest.fixture
def model(tiny):
    return zoo.load("florence-2-base", weights=tiny, batch_size=2)


def images(samples, *names):
    return [Image.open(samples / f"{n}.png").convert("RGB") for n in names]


CARD = {"num_beams": 3, "do_sample": False}  # the model card's generate call (its max_new_tokens=1024 too)
TOKENS = 12  # enough to exercise every parser; the card's 1024 would only make a random model ramble on
REGION = (4.0, 6.0, 20.0, 30.0)
TASK_INPUTS = {"phrase_grounding": {"phrase": "a cat"}, "open_vocabulary_detection": {"phrase": "a cat"},
               "referring_expression_segmentation": {"phrase": "a cat"}, "region_to_segmentation": {"region": REGION},
               "region_to_category": {"region": REGION}, "region_to_description": {"region": REGION},
               "region_to_ocr": {"region": REGION}}


def card_answer(plain, processor, image, task_token, text_input=None):
    """The model card's run_example: prompt = task + input, generate, decode, post_process_generation."""
    prompt = task_token if text_input is None else task_token + text_input
    inputs = processor(text=prompt, images=image, return_tensors="pt")
    ids = plain.generate(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], max_new_tokens=TOKENS,
                         **CARD)
    text = processor.batch_decode(ids, skip_special_tokens=False)[0]
    return processor.post_process_generation(text, task=task_token, image_size=(image.width, image.height))[task_token]


def card_input(processor, image, task):
    """What the card writes after the task token: the phrase, or the region as location tokens."""
    given = TASK_INPUTS.get(task, {})
    if "region" in given:
        bins = processor.post_processor.quantize(torch.tensor([given["region"]]), image.size)[0]
        return "".join(f"<loc_{int(v)}>" for v in bins)
    return given.get("phrase")


@pytest.mark.parametrize("size", [(64, 64), (96, 40)], ids=["square", "wide"])
def test_every_card_task_equals_the_model_card_path(tiny, model, samples, size):
    plain = Florence2ForConditionalGeneration.from_pretrained(tiny).eval()
    processor = AutoProcessor.from_pretrained(tiny)
    image = images(samples, "cat")[0].resize(size)
    for task, token in {**DESCRIBE_TASKS, **DETECT_TASKS}.items():
        with torch.no_grad():
            expected = card_answer(plain, processor, image, token, card_input(processor, image, task))
        options = {"task": task, "max_new_tokens": TOKENS, **TASK_INPUTS.get(task, {})}
        if task in DESCRIBE_TASKS:
            assert model.describe(image, **options) == [expected], task
        else:
            assert model.detect(image, **options) == [detections(expected)], task


def test_generation_defaults_follow_the_card_unless_the_checkpoint_or_caller_says(tiny, model):
    options = model.call_options("describe", {})
    assert model.generation_options(options) == {"max_new_tokens": 254, "num_beams": 3, "do_sample": False}
    model.model.generation_config.num_beams = 5  # a checkpoint whose generation_config sets beams: zoo leaves
    assert "num_beams" not in model.generation_options(options)  # them to it, passing no constant of its own
    assert model.generation_options(model.call_options("describe", {"num_beams": 2}))["num_beams"] == 2
    assert zoo.load("florence-2-base", weights=tiny, num_beams=4).generation_options(options)["num_beams"] == 4


def test_polygons_and_per_image_phrases(model, samples):
    pair = images(samples, "cat", "dog")
    per_image = model.detect(pair, task="phrase_grounding", phrase=["a cat", "a dog"], max_new_tokens=TOKENS)
    assert per_image == [model.detect(pair[0], task="phrase_grounding", phrase="a cat", max_new_tokens=TOKENS)[0],
                         model.detect(pair[1], task="phrase_grounding", phrase="a dog", max_new_tokens=TOKENS)[0]]
    with pytest.raises(zoo.BadInput, match="1 phrases for 2 inputs"):
        model.detect(pair, task="phrase_grounding", phrase=["a cat"])
    with pytest.raises(zoo.BadInput, match="needs a region"):
        model.describe(pair[0], task="region_to_category")
    with pytest.raises(zoo.BadInput, match="x0 < x1"):
        model.describe(pair[0], task="region_to_category", region=(10, 10, 5, 20))


def test_batched_equals_one_by_one(model, samples):
    names = ["cat", "dog", "ship", "truck", "frog"]  # batch_size=2: full and partial batches
    paths = [samples / f"{n}.png" for n in names]
    assert model.describe(paths, max_new_tokens=8) == [model.describe(p, max_new_tokens=8)[0] for p in paths]
    assert model.detect(paths[:3], max_new_tokens=16) == [model.detect(p, max_new_tokens=16)[0] for p in paths[:3]]
    labels = ["cat", "dog", "truck"]
    batch = model.classify(paths, labels=labels)
    for path, result in zip(paths, batch):
        assert [(p.label, round(p.score, 5)) for p in result] == \
            [(p.label, round(p.score, 5)) for p in model.classify(path, labels=labels)[0]]


def test_custom_prompt_and_beams(model, samples):
    assert len(model.describe(samples / "cat.png", prompt="What colour is the car?", max_new_tokens=5)) == 1
    assert len(model.describe(samples / "cat.png", num_beams=2, max_new_tokens=5)) == 1


def test_classify_equals_brute_force_per_label_likelihood(tiny, model, samples):
    labels = ["cat", "dog", "a red truck", "airplane"]
    plain = Florence2ForConditionalGeneration.from_pretrained(tiny).eval()
    processor = AutoProcessor.from_pretrained(tiny)
    tok = processor.tokenizer
    image = images(samples, "bird")[0]
    inputs = processor(text="<CAPTION>", images=image, return_tensors="pt")
    totals = []
    for label in labels:
        target = [plain.config.text_config.decoder_start_token_id, tok.bos_token_id,
                  *tok(label, add_special_tokens=False).input_ids, tok.eos_token_id]
        with torch.no_grad():
            logits = plain(**inputs, decoder_input_ids=torch.tensor([target[:-1]])).logits[0]
        totals.append(sum(torch.log_softmax(logits[i], -1)[t].item() for i, t in enumerate(target[1:])))
    expected = torch.softmax(torch.tensor(totals), 0)
    result = model.classify(image, labels=labels, top_k=4)[0]
    assert [p.label for p in result] == [labels[i] for i in expected.argsort(descending=True)]
    for p in result:
        assert p.score == pytest.approx(expected[labels.index(p.label)].item(), abs=1e-5)


def test_detection_parsing_on_known_output_strings(tiny):
    processor = AutoProcessor.from_pretrained(tiny)
    text = "</s><s>car<loc_100><loc_200><loc_300><loc_400>dog<loc_0><loc_0><loc_999><loc_999></s>"
    found = detections(processor.post_process_generation(text, task="<OD>", image_size=(1000, 500))["<OD>"])
    assert [d.label for d in found] == ["car", "dog"]
    # Bin centres ((bin + 0.5) * size / 1000), truncated to whole pixels by the processor.
    assert found[0].box == (100, 100, 300, 200)
    assert found[1].box == (0, 0, 999, 499)
    ocr = "</s><s>HELLO<loc_10><loc_20><loc_30><loc_20><loc_30><loc_40><loc_10><loc_40></s>"
    found = detections(processor.post_process_generation(ocr, task="<OCR_WITH_REGION>",
                                                         image_size=(1000, 1000))["<OCR_WITH_REGION>"])
    assert found[0].label == "HELLO" and found[0].box == (10, 20, 30, 40)
    assert found[0].polygons == ((10.0, 20.0, 30.0, 20.0, 30.0, 40.0, 10.0, 40.0),)  # the quadrilateral is kept
    grounding = "</s><s>a cat<loc_1><loc_2><loc_3><loc_4></s>"
    token = "<CAPTION_TO_PHRASE_GROUNDING>"
    found = detections(processor.post_process_generation(grounding, task=token, image_size=(1000, 1000))[token])
    assert found[0].label == "a cat"
    mask = "</s><s><loc_100><loc_100><loc_300><loc_100><loc_300><loc_300></s>"
    token = "<REFERRING_EXPRESSION_SEGMENTATION>"
    found = detections(processor.post_process_generation(mask, task=token, image_size=(1000, 1000))[token])
    assert len(found) == 1 and len(found[0].polygons[0]) == 6 and found[0].box[0] < found[0].box[2]


def test_detect_returns_boxes_in_input_pixels(model, samples, tmp_path):
    big = images(samples, "truck")[0].resize((320, 160))
    for result in model.detect([big], max_new_tokens=20):
        for d in result:
            assert 0 <= d.box[0] <= 320 and 0 <= d.box[1] <= 160
    assert model.detect([big], task="phrase_grounding", phrase="a truck", max_new_tokens=12)


def test_bad_inputs(model, samples, tmp_path):
    with pytest.raises(zoo.BadInput, match="labels you give"):
        model.classify(samples / "cat.png")
    with pytest.raises(zoo.BadInput, match="task='poem' must be one of 'caption'"):
        model.describe(samples / "cat.png", task="poem")
    with pytest.raises(zoo.BadInput, match="needs a phrase"):
        model.detect(samples / "cat.png", task="phrase_grounding")
    with pytest.raises(zoo.BadInput, match="not found"):
        model.describe(tmp_path / "missing.png")
    with pytest.raises(zoo.UnsupportedCapability, match="cannot embed"):
        model.embed(samples / "cat.png")
    # What the processor or the network would fail on deep inside (found by fuzzing):
    with pytest.raises(zoo.BadInput, match="holds the task token <OD>, which Florence-2 takes only as the whole"):
        model.describe(samples / "cat.png", prompt="<OD> and more")
    with pytest.raises(zoo.BadInput, match="holds the task token <CAPTION>"):
        model.detect(samples / "cat.png", task="phrase_grounding", phrase="a cat <CAPTION>")
    assert model.describe(samples / "cat.png", prompt="<OD>", max_new_tokens=2)  # a task token alone is a prompt
    longest = model.model.config.text_config.max_position_embeddings
    with pytest.raises(zoo.BadInput, match=f"the prompt is too long .*at most {longest}"):
        model.describe(samples / "cat.png", prompt="word " * longest)
    with pytest.raises(zoo.BadInput, match="The label 'a a a.* is too long"):
        model.classify(samples / "cat.png", labels=["a" + " a" * longest, "dog"])


def test_cli_describe_and_detect_draw(tiny, samples, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import build_cli

    runner = CliRunner()
    result = runner.invoke(build_cli(), ["describe", "florence-2-base", str(samples / "cat.png"), "--weights",
                                         str(tiny), "--max-new-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)[0]["text"]
    result = runner.invoke(build_cli(), ["describe", "florence-2-base", str(samples / "cat.png"), "--weights",
                                         str(tiny), "--max-new-tokens", "4"])
    assert (result.exit_code, result.stdout) == (0, answer + "\n")  # one input: its answer alone, as streamed
    result = runner.invoke(build_cli(), ["detect", "florence-2-base", str(samples / "cat.png"), "--weights", str(tiny),
                                         "--draw", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "drawn" / "cat.boxes.png").stat().st_size > 0
    result = runner.invoke(build_cli(), ["detect", "florence-2-base", str(samples / "cat.png"), "--weights", str(tiny)])
    assert result.exit_code == 0 and result.stdout.splitlines()[0].split() == ["INPUT", "LABEL", "BOX"]  # found or not
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    inputs = [str(samples / "cat.png"), str(broken), str(samples / "dog.png")]
    result = runner.invoke(build_cli(), ["describe", "florence-2-base", *inputs, "--weights", str(tiny),
                                         "--max-new-tokens", "4"])
    assert result.exit_code == 1 and [line.split(":")[0] for line in result.stdout.splitlines()] == inputs[::2]
    assert f"Error: {broken} is not a readable image" in result.stderr
    streamed = runner.invoke(build_cli(), ["describe", "florence-2-base", *inputs, "--weights", str(tiny),
                                           "--max-new-tokens", "4", "--stream"])  # each input, one after another
    assert (streamed.exit_code, streamed.stdout) == (1, result.stdout)  # beam search: each answer whole, at its end
    assert [e for e in streamed.stderr.splitlines() if e.startswith("Error")] == \
        [e for e in result.stderr.splitlines() if e.startswith("Error")]
    result = runner.invoke(build_cli(), ["detect", "florence-2-base", *inputs, "--weights", str(tiny), "--draw",
                                         str(tmp_path / "drawn")])
    assert result.exit_code == 1 and (tmp_path / "drawn" / "dog.boxes.png").stat().st_size > 0


def test_generation_runs_one_input_at_a_time_on_a_cpu_unless_told(tiny):
    assert zoo.load("florence-2-base", weights=tiny).batch_size == 1  # batching only pads and waits on a CPU
    assert zoo.load("florence-2-base", weights=tiny, batch_size=8).batch_size == 8
