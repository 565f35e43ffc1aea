"""Over-training a tiny model in tests: plain full-parameter SFT on calibration examples.

It lives beside the tests (not in ``regym.models``) because it encodes its examples with
``regym.rejuvenation.calibration``, a layer above the model builders.
"""

from __future__ import annotations

import torch

from regym.rejuvenation.calibration import encode_calibration


def finetune(model, tokenizer, examples, epochs: int = 10, lr: float = 1e-4, batch_size: int = 8, seed: int = 0,
             max_length: int = 128, progress=None):
    """Plain full-parameter SFT (AdamW, teacher forcing, loss on scored tokens only), in place.

    Used to make an over-trained ("OverSFT") copy for tests, demos and the handoff report; the
    examples use the calibration forms of ``regym.rejuvenation.calibration``. Returns the
    per-epoch mean losses.
    """
    encoded = encode_calibration(tokenizer, examples, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(encoded), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start:start + batch_size]]
            length = max(e.input_ids.shape[1] for e in batch)
            ids = torch.full((len(batch), length), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), length), dtype=torch.long)
            labels = torch.full((len(batch), length), -100, dtype=torch.long)
            for row, example in enumerate(batch):
                size = example.input_ids.shape[1]
                ids[row, :size] = example.input_ids[0]
                attention[row, :size] = 1
                labels[row, :size] = torch.where(example.loss_mask[0], example.input_ids[0], -100)
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(encoded))
        if progress is not None:
            progress(losses[-1])
    model.eval()
    return losses
