"""Azure target — Test results: send a test image to the deployed endpoint (bearer key or token on every
call), then the same results view as the local test: predictions, the annotated image saved as PNG, and
latency p50/p95 over N requests. Runs the core's endpoint-test step once the Azure ML adapter registers it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import core_steps_available
from cvtriton_tui.widgets.results_view import ResultsView

# The core's endpoint-test step is registered and runs headless (cvtriton-tui run --steps endpoint-test); this pane does
# not hand its fields to it yet, so it must not run the step with defaults in their place.
PANE_DRIVES_STEP = False
UNAVAILABLE = ("This pane does not test the endpoint yet: run `cvtriton-tui run --steps endpoint-test --image "
               "IMG` headless. The Local test step shows these results for the same model served on this machine.")
LOCAL_SOURCE = "the local Triton on this machine (Local test step), not the endpoint"


class ResultsPane(StepPane):
    step_id = "results"
    intro = "Predictions from the deployed endpoint on your test image, the boxes drawn, and its latency."
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "ENDPOINT_NAME")

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static(Text(UNAVAILABLE, style="yellow"), id="results-note", classes="unavailable")
        with Horizontal(classes="buttons"):
            yield Button("Test endpoint (F5)", id="endpoint-test-run", variant="primary", classes="run-button")
            yield Button("Show the local test's results", id="show-local")
        yield ResultsView(id="endpoint-results")

    def setup(self) -> None:
        self.entered()

    def entered(self) -> None:
        self.available = PANE_DRIVES_STEP and core_steps_available("endpoint-test")
        self.query_one("#results-note").display = not self.available
        self.query_one("#show-local", Button).disabled = "test" not in self.state.results

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "endpoint-test-run":
            self.request_run()
        elif event.button.id == "show-local" and "test" in self.state.results:
            self.query_one(ResultsView).show_result(self.state.results["test"], source=LOCAL_SOURCE,
                                                    precision=self.state.results.get("test-precision", ""))
            self.app.notify("Showing the local Triton test; the annotated image is on the Local test step.")

    def run_step(self) -> None:
        if not (PANE_DRIVES_STEP and core_steps_available("endpoint-test")):
            self.app.notify(UNAVAILABLE, severity="warning")
            return
        self.app.notify("The endpoint test step is registered but this pane does not drive it yet.",
                        severity="warning")
