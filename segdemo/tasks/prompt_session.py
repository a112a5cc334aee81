"""One page's prompting on one image: the image, its prompter and that prompter's per-image
state, the prompts, and one step per prompt, as ``SamPredictor`` and RITM's predictor hold
theirs. The transitions a user makes are methods: click, undo, clear, choose a mask, change
model.

Everything inside is in one frame, the working image's pixels (``image.pixels``); prompts
change frame only at the edges (the page sends working pixels, the API's original pixels are
converted where they are parsed, ``original_prompts_json`` converts back).

A transition returns a new ``PromptSession`` and leaves the old one as it was, and it returns
only after its model call succeeded: a call that raises leaves the caller holding the session
from before, with prompts and masks in step. Replaying the prompts (``replay``) gives the same
masks as clicking them one by one, because both fold ``click`` over the prompts, feeding each
step's chosen mask back to the next.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from segdemo.imaging import PreparedImage
from segdemo.prompts import Click, Prompt, PromptError, Prompts, mapped, reaching, to_json
from segdemo.tasks.promptable import ImageState, Prompter
from segdemo.tasks.prompted import prepare, prompter_for, propose

MAX_PROMPTS = 64  # per image: the masks kept for "undo" stay few


@dataclass(frozen=True)
class Step:
    """The model's answer to the prompts up to one prompt.

    masks: ``CxHxW bool`` at the working size; scores: ``C``; feedback: one value per mask;
    chosen: the mask shown (and fed back next); seconds: the model call's time.
    """

    masks: np.ndarray
    scores: tuple[float, ...]
    feedback: tuple[Any, ...]
    chosen: int
    seconds: float

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.chosen]


@dataclass(frozen=True)
class PromptSession:
    """``image`` with ``model``'s prompter and its per-image ``state``; ``prompts`` (working
    pixels) and one ``Step`` per prompt; ``refined``: whether each mask is refined on the
    photo (``tasks.refine``) or is the network's own."""

    image: PreparedImage
    model: str
    prompter: Prompter
    state: ImageState
    prompts: tuple[Prompt, ...] = ()
    steps: tuple[Step, ...] = ()
    refined: bool = True

    @classmethod
    def open(cls, image: PreparedImage, model: str, refined: bool = True) -> PromptSession:
        """A session on ``image`` with its state prepared now (SAM's embedding), so that the
        first click answers at once."""
        prompter = prompter_for(model)
        return cls(image, model, prompter, prepare(prompter, image.pixels), refined=refined)

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def click(
        self,
        prompt: Prompt,
        multimask: bool = True,
        wait: float | None = None,
        on_network: Callable[[np.ndarray], None] | None = None,
    ) -> PromptSession:
        """This session with ``prompt`` added and the model's answer to all prompts so far;
        the current chosen mask's feedback goes back to the model, and a click's disc reaches
        no farther than that mask's edge (``prompts.reaching``). ``wait``: seconds to wait for
        the model's turn (``prompted.model_turn``); ``on_network``: called with the network's
        own mask before it is refined (``prompted.propose``)."""
        if len(self.prompts) >= MAX_PROMPTS:
            raise PromptError(f"That is {MAX_PROMPTS} prompts already: clear them and start again.")
        previous = self.current
        if isinstance(prompt, Click):
            prompt = reaching(prompt, None if previous is None else previous.mask)
        prompts = (*self.prompts, prompt)
        began = time.perf_counter()
        prediction = propose(
            self.prompter,
            self.state,
            Prompts.of(prompts),
            None if previous is None else previous.feedback[previous.chosen],
            multimask,
            wait,
            photo=self.image.pixels if self.refined else None,
            previous=None if previous is None else previous.mask,
            on_network=on_network,
        )
        step = Step(
            prediction.masks,
            tuple(float(s) for s in prediction.scores),
            tuple(_compact(f) for f in prediction.feedback),
            prediction.best,
            time.perf_counter() - began,
        )
        return replace(self, prompts=prompts, steps=(*self.steps, step))

    def replay(self, prompts: Iterable[Prompt], multimask: bool = True) -> PromptSession:
        """The session that clicking ``prompts`` one by one, from none, would give."""
        session = self.clear()
        for prompt in prompts:
            session = session.click(prompt, multimask)
        return session

    def undo(self) -> PromptSession:
        """The session before its last prompt (no model call: each step keeps its own mask)."""
        return replace(self, prompts=self.prompts[:-1], steps=self.steps[:-1])

    def clear(self) -> PromptSession:
        return replace(self, prompts=(), steps=())

    def choose(self, index: int) -> PromptSession:
        """Show mask ``index`` of the current step (and feed it back with the next prompt)."""
        current = self.current
        if current is None or not 0 <= index < len(current.masks):
            raise PromptError("There is no such mask to choose: click on the image first.")
        return replace(self, steps=(*self.steps[:-1], replace(current, chosen=int(index))))

    def with_model(self, model: str) -> PromptSession:
        """The same prompts answered by ``model``: replayed, so that every step (and so every
        undo) shows that model's masks."""
        return PromptSession.open(self.image, model, self.refined).replay(self.prompts)

    def with_refinement(self, refined: bool) -> PromptSession:
        """The same prompts with the masks refined on the photo, or the network's own:
        replayed, so that every step (and so every undo) shows the same kind of mask."""
        return replace(self, refined=bool(refined)).replay(self.prompts)

    def original_mask(self) -> np.ndarray:
        """The chosen mask at the uploaded image's size, ``HxW bool``."""
        if self.current is None:
            raise PromptError("Click on the picture first: there is no mask yet.")
        return self.image.mask_to_original(self.current.mask)

    def original_prompts_json(self) -> str:
        """The prompts in click order, in the original image's pixels, as ``/prompt_segment``
        takes them."""
        return json.dumps([to_json(mapped(p, self.image.to_original)) for p in self.prompts])


def _compact(feedback: Any) -> Any:
    """Feedback as a step keeps it: a float32 map in float16, half the bytes of every undo
    step (a 1024×768 probability map: 1.5 MB, not 3). Both prompters read it back as
    float32, and ``replay`` keeps it the same way, so replayed and clicked masks agree."""
    if isinstance(feedback, np.ndarray) and feedback.dtype == np.float32:
        return feedback.astype(np.float16)
    return feedback


def working_prompts(prompts: Iterable[Prompt], image: PreparedImage) -> list[Prompt]:
    """Prompts given in the original image's pixels (the API's) in ``image``'s working pixels."""
    return [mapped(p, image.to_working) for p in prompts]
