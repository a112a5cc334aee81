"""Which threads run torch: every prompted model call on the model's one thread, whichever
server thread took the request; every other handler on a thread that ends with it."""

from __future__ import annotations

import contextvars
import threading

import gradio as gr
import numpy as np
import pytest

from segdemo.prompts import Click, Prompts
from segdemo.tasks import prompted
from segdemo.torch_threads import MODEL_THREAD_NAME, in_passing_thread, on_model_thread
from segdemo.ui.common import user_errors


def test_prompted_model_work_runs_on_one_thread_from_any_caller(random_weights):
    prompter = prompted.prompter_for("click_net")
    pixels = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    image = prompted.prepare(prompter, pixels)
    ran_on, predict = [], prompter.predict

    def recording(*args, **kwargs):
        ran_on.append(threading.current_thread())
        return predict(*args, **kwargs)

    prompter.predict = recording
    callers = [
        threading.Thread(
            target=prompted.propose,
            args=(prompter, image, Prompts((Click(40 + k, 50, True),))),
            kwargs={"photo": pixels},
        )
        for k in range(3)
    ]
    for caller in callers:
        caller.start()
        caller.join()
    assert len(ran_on) == 3 and len(set(ran_on)) == 1
    assert ran_on[0].name.startswith(MODEL_THREAD_NAME)
    assert ran_on[0] not in callers


def test_the_model_thread_may_call_itself_and_hands_errors_back():
    inner = on_model_thread(lambda: on_model_thread(lambda: threading.current_thread().name))
    assert inner.startswith(MODEL_THREAD_NAME)
    with pytest.raises(ZeroDivisionError):
        on_model_thread(lambda: 1 / 0)
    assert on_model_thread(lambda: 7) == 7  # and it still serves after an error


def test_a_passing_thread_carries_the_context_ends_and_hands_errors_back():
    request = contextvars.ContextVar("request")
    request.set("page 1")
    seen = []

    def work():
        seen.append(threading.current_thread())
        return request.get()

    assert in_passing_thread(work) == "page 1"
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()
    with pytest.raises(KeyError):
        in_passing_thread(lambda: {}["missing"])


def test_a_handler_runs_in_a_passing_thread_and_its_errors_stay_messages():
    @user_errors
    def handler(value):
        if value is None:
            raise ValueError("no value")
        return threading.current_thread()

    ran_on = handler(1)
    assert ran_on is not threading.current_thread() and not ran_on.is_alive()
    with pytest.raises(gr.Error):
        handler(None)
