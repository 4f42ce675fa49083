"""A tiny causal transformer language model on a generated toy-English corpus.

Everything the toolkit needs, in one file and without downloads:

- ``model()`` builds the network, called as ``model(x)`` on token ids, returning logits;
- ``hf_model()`` is the same network with the Hugging Face calling convention
  (``model(input_ids=..., attention_mask=None).logits``) and the same state_dict;
- ``dataset()`` gives ``(tokens, next_tokens)`` pairs and ``hf_dataset()`` the same data as
  ``{"input_ids": ..., "labels": ...}`` dicts;
- ``token_cross_entropy(outputs, targets)`` is a user loss equal to the built-in crossentropy.

The corpus comes from a seeded toy grammar: sentences such as "two small cats near the robot
see alice ." whose verbs agree in number with their subject, packed into fixed-length
sequences that start with ``<bos>``, end with ``<eos>`` and are padded with ``<pad>``. The
targets of padded positions are -100, so the loss ignores them.

Train and save a checkpoint with ``python examples/tiny_lm.py train lm.pt``.
"""
import argparse
import os
import random
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset, TensorDataset

IGNORE = -100  # target of a position that the loss skips (PyTorch's default ignore_index)
SPECIALS = ("<pad>", "<bos>", "<eos>", ".")
SINGULAR_DETERMINERS = ("the", "a")
PLURAL_DETERMINERS = ("the", "some", "two")
ADJECTIVES = ("big", "small", "red", "old", "happy", "quiet")
NOUNS = (("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("child", "children"),
         ("teacher", "teachers"), ("robot", "robots"))
NAMES = ("alice", "bob")
TRANSITIVE_VERBS = (("sees", "see"), ("likes", "like"), ("follows", "follow"), ("finds", "find"))
INTRANSITIVE_VERBS = (("sleeps", "sleep"), ("runs", "run"), ("sings", "sing"))
PREPOSITIONS = ("near", "with", "under")
VOCAB = tuple(dict.fromkeys((
    *SPECIALS, *SINGULAR_DETERMINERS, *PLURAL_DETERMINERS, *ADJECTIVES, *(w for pair in NOUNS for w in pair),
    *NAMES, *(w for pair in TRANSITIVE_VERBS for w in pair), *(w for pair in INTRANSITIVE_VERBS for w in pair),
    *PREPOSITIONS)))  # 45 tokens, duplicates ("the") once
TOKEN_ID = {word: i for i, word in enumerate(VOCAB)}
PAD, BOS, EOS = TOKEN_ID["<pad>"], TOKEN_ID["<bos>"], TOKEN_ID["<eos>"]
SEQUENCE_LENGTH = 25  # tokens per sequence; the model sees 24 and predicts the next 24
CONTEXT = SEQUENCE_LENGTH - 1
NUM_TRAIN, NUM_TEST = 1024, 256
TRAIN_SEED, TEST_SEED = 0, 1
EPOCHS = 10


# ---------------------------------------------------------------------------------------------
# Corpus


def _noun_phrase(rng: random.Random) -> tuple[list[str], bool]:
    """A name, or a determiner, up to two adjectives and a noun; and whether it is plural."""
    if rng.random() < 0.15:
        return [rng.choice(NAMES)], False
    plural = rng.random() < 0.5
    determiner = rng.choice(PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
    adjectives = rng.sample(ADJECTIVES, k=rng.choice((0, 0, 1, 2)))
    return [determiner, *adjectives, rng.choice(NOUNS)[plural]], plural


def _with_prepositional_phrase(rng: random.Random, words: list[str]) -> list[str]:
    """``words``, followed a quarter of the time by a preposition and a noun phrase."""
    if rng.random() < 0.25:
        return [*words, rng.choice(PREPOSITIONS), *_noun_phrase(rng)[0]]
    return words


def _sentence(rng: random.Random) -> list[str]:
    """One sentence of at most 20 words; the verb agrees with the subject's head noun, which a
    prepositional phrase may separate from it ("the cat near two dogs sleeps .")."""
    subject, plural = _noun_phrase(rng)
    subject = _with_prepositional_phrase(rng, subject)
    if rng.random() < 0.3:
        return [*subject, rng.choice(INTRANSITIVE_VERBS)[plural], "."]
    verb = rng.choice(TRANSITIVE_VERBS)[plural]
    return [*subject, verb, *_with_prepositional_phrase(rng, _noun_phrase(rng)[0]), "."]


def corpus(num_sequences: int, seed: int) -> torch.Tensor:
    """Token ids of ``num_sequences`` sequences from the grammar, the same for the same seed.

    Each sequence is ``<bos>``, whole sentences for as long as the next one fits, ``<eos>``,
    then ``<pad>`` up to ``SEQUENCE_LENGTH`` tokens.

    Returns:
        int64 tensor of shape (num_sequences, SEQUENCE_LENGTH).
    """
    rng = random.Random(seed)
    sequences = []
    for _ in range(num_sequences):
        words = ["<bos>"]
        while len(words) + len(sentence := _sentence(rng)) + 1 <= SEQUENCE_LENGTH:
            words += sentence
        words += ["<eos>"] + ["<pad>"] * (SEQUENCE_LENGTH - len(words) - 1)
        sequences.append([TOKEN_ID[w] for w in words])
    return torch.tensor(sequences, dtype=torch.int64)


def _inputs_and_targets(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``seq[:-1]`` and aligned targets ``seq[1:]`` (targets[t] is the token after
    inputs[t]), with IGNORE where the next token is padding."""
    targets = sequences[:, 1:].clone()  # (N, T)
    targets[targets == PAD] = IGNORE
    return sequences[:, :-1], targets


def _splits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return (_inputs_and_targets(corpus(NUM_TRAIN, TRAIN_SEED)),
            _inputs_and_targets(corpus(NUM_TEST, TEST_SEED)))


def dataset() -> tuple[TensorDataset, TensorDataset]:
    """Train and test sets of ``(tokens, next_tokens)`` pairs, both int64 of shape (CONTEXT,).

    Returns:
        (train, test): NUM_TRAIN and NUM_TEST sequences from two seeds of the grammar.
    """
    (x_train, y_train), (x_test, y_test) = _splits()
    return TensorDataset(x_train, y_train), TensorDataset(x_test, y_test)


class TokenDictDataset(Dataset):
    """Items ``{"input_ids": tokens, "labels": next_tokens}``, as Hugging Face models take them."""

    def __init__(self, input_ids: torch.Tensor, labels: torch.Tensor):
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def hf_dataset() -> tuple[TokenDictDataset, TokenDictDataset]:
    """The data of :func:`dataset` as dict items, for :func:`hf_model`.

    Returns:
        (train, test) of ``{"input_ids": ..., "labels": ...}`` items.
    """
    (x_train, y_train), (x_test, y_test) = _splits()
    return TokenDictDataset(x_train, y_train), TokenDictDataset(x_test, y_test)


# ---------------------------------------------------------------------------------------------
# Model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees itself and earlier positions."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model must be a multiple of heads, got d_model={d_model}, heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, C = h.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in self.qkv(h).split(C, dim=2))  # (B, nh, T, hs)
        # The math kernel, because the fused CPU and GPU kernels have no second derivatives,
        # which the toolkit's Hessian-vector products need.
        with sdpa_kernel(SDPBackend.MATH):
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)  # (B, nh, T, hs)
        return self.proj(a.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP, each added to the residual stream."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 nn.Dropout(dropout))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class TinyLM(nn.Module):
    """Token and position embeddings, ``layers`` blocks, a final LayerNorm and a linear head."""

    def __init__(self, *, vocab: int, context: int, d_model: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the next token at every position.

        Args:
            x: int64 token ids of shape (B, T), T <= context.

        Returns:
            logits of shape (B, T, vocab); logits[:, t] depend on x[:, :t + 1] only.

        Raises:
            ValueError: sequences longer than the context.
        """
        length = x.shape[1]
        if length > self.context:
            raise ValueError(f"sequences of {length} tokens are longer than the model's context of "
                             f"{self.context}; cut them or build the model with context={length}")
        h = self.tok_emb(x) + self.pos_emb(torch.arange(length, device=x.device))  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))  # (B, T, V)


@dataclass
class LMOutput:
    """What :class:`HFTinyLM` returns, like a Hugging Face ``CausalLMOutput``."""

    logits: torch.Tensor  # (B, T, V)


class HFTinyLM(TinyLM):
    """:class:`TinyLM` called like a Hugging Face causal LM; same parameters, same state_dict."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> LMOutput:
        """Logits of the next token at every position, wrapped in an :class:`LMOutput`.

        Args:
            input_ids: int64 token ids of shape (B, T).
            attention_mask: None or all ones. The data is right-padded, so the causal mask
                already keeps every real position from seeing the padding after it.

        Raises:
            ValueError: an attention_mask with zeros (left padding is not supported).
        """
        if attention_mask is not None and not bool((attention_mask == 1).all()):
            raise ValueError("attention_mask with zeros is not supported: pad on the right, after <eos>, "
                             "and pass attention_mask=None")
        return LMOutput(logits=super().forward(input_ids))


def model(*, vocab: int = len(VOCAB), context: int = CONTEXT, d_model: int = 32, layers: int = 2, heads: int = 4,
          dropout: float = 0.0) -> TinyLM:
    """The language model, called as ``model(x)``; initialized from torch's global seed.

    The defaults give 29,165 parameters; ``model(d_model=8, layers=1)`` has 1,845, few enough
    for a dense Hessian.
    """
    return TinyLM(vocab=vocab, context=context, d_model=d_model, layers=layers, heads=heads, dropout=dropout)


def hf_model(*, vocab: int = len(VOCAB), context: int = CONTEXT, d_model: int = 32, layers: int = 2,
             heads: int = 4, dropout: float = 0.0) -> HFTinyLM:
    """The network of :func:`model` (same state_dict), called as
    ``model(input_ids=..., attention_mask=None)`` and returning an object with ``.logits``."""
    return HFTinyLM(vocab=vocab, context=context, d_model=d_model, layers=layers, heads=heads, dropout=dropout)


# ---------------------------------------------------------------------------------------------
# Loss and training


def token_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over the positions whose target is not IGNORE, and their number.

    A user loss for ``--loss``, equal to the toolkit's built-in crossentropy: the toolkit adds
    up both parts over the batches and reports the sum divided by the count.

    Args:
        outputs: logits of shape (B, T, V).
        targets: int64 of shape (B, T), aligned with the outputs; IGNORE where there is none.

    Returns:
        (loss_sum, count): two scalar tensors.
    """
    keep = targets != IGNORE  # (B, T)
    log_probs = outputs.log_softmax(dim=-1)  # (B, T, V)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(keep, -picked, 0.0).sum(), keep.sum()


def mean_token_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy per predicted token of ``net`` on ``(x, y)``, in eval mode."""
    net.eval()
    with torch.no_grad():
        loss_sum, count = token_cross_entropy(net(x), y)
    return (loss_sum / count).item()


def train(path: str, *, epochs: int = EPOCHS, seed: int = 0, batch_size: int = 64,
          lr: float = 1e-2) -> tuple[float, float]:
    """Train :func:`model` with Adam on the training set and save its state_dict to ``path``.

    Args:
        path: the checkpoint file to write (``torch.save(model.state_dict(), path)``).
        epochs: passes over the training set.
        seed: seeds the initialization and the order of the batches.
        batch_size: sequences per step.
        lr: Adam's learning rate.

    Returns:
        (start, end): the mean token loss on the training set before and after training.
    """
    torch.manual_seed(seed)
    net = model()
    x, y = dataset()[0].tensors
    start = mean_token_loss(net, x, y)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(batch_size):
            loss_sum, count = token_cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad()
            (loss_sum / count).backward()
            optimizer.step()
    end = mean_token_loss(net, x, y)
    torch.save(net.state_dict(), path)
    return start, end


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the model and save its state_dict")
    train_parser.add_argument("path", help="checkpoint file to write, e.g. lm.pt")
    train_parser.add_argument("--epochs", type=int, default=EPOCHS, help="passes over the training set")
    train_parser.add_argument("--seed", type=int, default=0, help="seed of the initialization and batch order")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(args.path))
    if not os.path.isdir(folder):
        parser.error(f"cannot write {args.path}: folder {folder} does not exist; create it first")
    began = time.perf_counter()
    start, end = train(args.path, epochs=args.epochs, seed=args.seed)
    print(f"mean token loss on the training set: {start:.4f} at init, {end:.4f} after {args.epochs} epochs "
          f"({time.perf_counter() - began:.1f} s); saved {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
