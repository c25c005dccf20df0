"""Artifacts: figures and files an execution produces, listed and fetched on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from hutch import LocalSandbox, PythonSandbox

PLOT = """
import matplotlib.pyplot as plt
import numpy as np
x = np.linspace(0, 10, 100)
y = np.sin(x)
plt.plot(x, y)
plt.title('Sine Wave')
plt.show()  # Automatically captured
"""


async def test_plot_and_data_file_via_the_agent(hutch_server, tmp_path: Path) -> None:
    async with PythonSandbox.create_remote(server_url=hutch_server.url,
                                           api_key=hutch_server.api_key) as sb:
        result = await sb.run(PLOT + "open('/workspace/table.csv', 'w').write('a,b\\n1,2\\n')\n")
        by_type = {a.type: a for a in result.artifacts}
        assert set(by_type) == {"image/png", "text/csv"}, result.artifacts
        png, csv = by_type["image/png"], by_type["text/csv"]
        assert png.category == "plots" and png.path.startswith(sb.artifacts_dir + "/plots/")
        assert png.execution_id == result.execution_id and png.size > 1000
        assert csv.category == "data" and csv.path == "/workspace/table.csv"
        # listed later, fetched lazily (sync and async)
        listed = sb.list_artifacts()
        assert {a.id for a in listed} >= {png.id, csv.id}
        assert listed[0].read()[:8] in (b"\x89PNG\r\n\x1a\n", b"a,b\n1,2\n")
        assert (await png.aread()).startswith(b"\x89PNG")
        assert csv.save(tmp_path).read_bytes() == b"a,b\n1,2\n"
        assert png.to_dict()["id"] == png.id
        # a figure left open at the end of a run is captured too
        left_open = await sb.run("import matplotlib.pyplot as plt\nplt.figure()\nplt.plot([1, 2])")
        assert [a.type for a in left_open.artifacts] == ["image/png"]
        # a run that makes nothing lists nothing new
        quiet = await sb.run("print('no files')")
        assert quiet.artifacts == []
        assert sb.list_artifacts(execution_id=quiet.execution_id) == []


@pytest.mark.sessions
async def test_plot_in_a_session(configured) -> None:
    async with LocalSandbox.create(name="artifacts") as sb:
        await sb.run(PLOT)
        artifacts = sb.list_artifacts()
        assert len(artifacts) == 1 and artifacts[0].type == "image/png"
        assert artifacts[0].read().startswith(b"\x89PNG")
        assert sb.artifacts_dir == "/workspace/artifacts"
        sb.cleanup_session()
