"""What tests and benchmarks share: for the tiny checkpoints of every vision-language plugin, an offline BPE and
text-writing weights; videos written with PyAV.

Each plugin builds its own random checkpoints (zoo_florence2.testing, zoo_qwen2vl.testing) with these, saved
like real ones, so tests load them through the same path as real weights and benchmarks time them at the
real architecture sizes. Their tokenizers are small BPEs trained here: the vocabulary (and the output
layer) is smaller than the released models', the only size difference from the real networks.
"""

import itertools

CORPUS = [
    "What does the image describe?", "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.", "What is the text in the image?",
    "What is the text in the image, with regions?", "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.", "Locate the phrases in the caption: a cat",
    "Which of these is shown in the image? Answer with one of: airplane, automobile, bird, cat, deer, dog, frog.",
    "a photo of a cat dog bird frog horse ship truck airplane automobile deer. How many dogs do you see?",
    "Describe this video. Describe this image. A car parked on a street, 你好 用中文回答",
]


def byte_level_bpe(special, added, vocab_size=500):
    """A byte-level BPE trained here on CORPUS, with the given special and added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token=special[-1] if "<unk>" in special else None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 3, trainer)
    bpe.add_special_tokens(added)
    return bpe


def write_text_not_stop(model, eos_token_id, size):
    """Random weights that write varied text instead of ending at once: no end-of-text logit, and
    (at tiny sizes only, where it is numerically safe) larger weights so that greedy picks differ."""
    import torch

    with torch.no_grad():
        model.get_output_embeddings().weight[eos_token_id] = 0
        if size == "tiny":
            for p in model.parameters():
                if p.ndim == 2:
                    p.mul_(4)


def write_video(path, frames, *, fps=8, codec="mpeg4", b_frames=0, start=0, title=None, **options):
    """`frames` (HxWx3 uint8 arrays) written with PyAV as a video at `fps`, the first at `start` (in frames);
    `b_frames` > 0 sends packets out of presentation order; options go to av.open (such as format)."""
    import av

    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w", **options) as container:
        if title:
            container.metadata["title"] = title
        stream = container.add_stream(codec, rate=fps)
        (stream.height, stream.width, _), stream.pix_fmt = first.shape, "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        for i, pixels in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = start + i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
