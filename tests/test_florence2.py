"""Florence-2 on a tiny random model built offline and loaded through the real weights path."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Florence2ForConditionalGeneration

import zoo
from zoo_florence2 import DESCRIBE_TASKS, detections


@pytest.fixture
def tiny(florence2_tiny):
    return florence2_tiny


@pytest.fixture
def model(tiny):
    return zoo.load("florence-2-base", weights=tiny, batch_size=2)


def images(samples, *names):
    return [Image.open(samples / f"{n}.png").convert("RGB") for n in names]


def test_describe_equals_plain_transformers_generate(tiny, model, samples):
    plain_model = Florence2ForConditionalGeneration.from_pretrained(tiny).eval()
    processor = AutoProcessor.from_pretrained(tiny)
    for task, token in DESCRIBE_TASKS.items():
        image = images(samples, "cat")[0]
        inputs = processor(text=token, images=image, return_tensors="pt")
        ids = plain_model.generate(**inputs, max_new_tokens=10, do_sample=False, num_beams=1)
        text = processor.batch_decode(ids, skip_special_tokens=False)[0]
        expected = processor.post_process_generation(text, task=token, image_size=image.size)[token]
        assert model.describe(samples / "cat.png", task=task, max_new_tokens=10) == [expected]


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
    assert len(model.describe(samples / "cat.png", num_beams=2, max_new_tokens=5)[0]) > 0


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
    found = detections(processor.post_process_generation(text, task="<OD>", image_size=(1000, 500)), "<OD>")
    assert [d.label for d in found] == ["car", "dog"]
    # Bin centres ((bin + 0.5) * size / 1000), truncated to whole pixels by the processor.
    assert found[0].box == (100, 100, 300, 200)
    assert found[1].box == (0, 0, 999, 499)
    ocr = "</s><s>HELLO<loc_10><loc_20><loc_30><loc_20><loc_30><loc_40><loc_10><loc_40></s>"
    found = detections(processor.post_process_generation(ocr, task="<OCR_WITH_REGION>", image_size=(1000, 1000)),
                       "<OCR_WITH_REGION>")
    assert found[0].label == "HELLO" and found[0].box == (10, 20, 30, 40)
    grounding = "</s><s>a cat<loc_1><loc_2><loc_3><loc_4></s>"
    found = detections(processor.post_process_generation(grounding, task="<CAPTION_TO_PHRASE_GROUNDING>",
                                                         image_size=(1000, 1000)), "<CAPTION_TO_PHRASE_GROUNDING>")
    assert found[0].label == "a cat"


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


def test_cli_describe_and_detect_draw(tiny, samples, tmp_path):
    from click.testing import CliRunner

    from zoo.cli import build_cli

    runner = CliRunner()
    result = runner.invoke(build_cli(), ["describe", "florence-2-base", str(samples / "cat.png"), "--weights",
                                         str(tiny), "--max-new-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(build_cli(), ["detect", "florence-2-base", str(samples / "cat.png"), "--weights", str(tiny),
                                         "--draw", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "drawn" / "cat.boxes.png").stat().st_size > 0
