"""The note a page shows while a just-started server is still importing torch and the project's libraries.

Every page imports this module first, before ``common``. Python runs its body once per server process, during the
first page a visitor opens, which is the one page that waits for those imports (several seconds) when the server
has no warm-up (``streamlit run dashboard/Home.py``) or a tab reconnects while it is still warming up. The note is
cleared by ``common.page`` as soon as the imports are done; later runs of any page show nothing of it.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

NOTE = ("Starting the dashboard: loading torch and the project's libraries. This takes a few seconds, once after "
        "each server start.")

_owner = get_script_run_ctx()  # the script run (of one session) that shows the note
_shown = [True]
_note = st.empty()
_note.info(NOTE, icon=":material/hourglass_top:")


def done() -> None:
    """Remove the note: called by every page once its imports are loaded, it acts only in the run that showed the
    note (a placeholder written from another run or session would blank that run's first element instead)."""
    if _shown[0] and get_script_run_ctx() is _owner:
        _shown[0] = False
        _note.empty()
