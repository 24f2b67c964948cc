"""``mlkube console``: a one-time login link to the local controller's web console."""

from __future__ import annotations

import webbrowser

import click

from mlkube.backends.local.controller.api import Client
from mlkube.backends.local.controller.settings import state_dir as resolve_state_dir
from mlkube.cli.output import print_info
from mlkube.cli.targets import state_dir_option


@click.command("console")
@click.option("--open", "open_browser", is_flag=True, help="Also open the link in a browser.")
@state_dir_option
def console_command(open_browser: bool, state_dir: str | None) -> None:
    """Print a one-time link that signs a browser in to the web console.

    The console is served by the running controller (`mlkube up`) on 127.0.0.1. The link
    carries a code in its #fragment (browsers never send it to a server, so no log holds
    it); it works once, within two minutes, and sets a session cookie for the browser.

    \b
    Example:
      mlkube console
      mlkube console --open --state-dir /tmp/mlkube-demo
    """
    with Client(resolve_state_dir(state_dir)) as client:
        answer = client.call("POST", "/console/api/code")
        url = f"http://127.0.0.1:{client.port}/console/#code={answer['code']}"
    print_info("Open the console (the link works once, for two minutes):")
    print_info(f"  {url}")
    if open_browser:
        webbrowser.open(url)


COMMANDS = [console_command]
