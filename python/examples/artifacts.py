"""Seed: Artifact Management — a matplotlib figure shown with plt.show() is captured."""

import asyncio

from sandbox import LocalSandbox


async def main() -> None:
    async with LocalSandbox.create(name="artifacts") as sandbox:
        # Automatic artifact capture
        await sandbox.run("""
import matplotlib.pyplot as plt
import numpy as np
x = np.linspace(0, 10, 100)
y = np.sin(x)
plt.plot(x, y)
plt.title('Sine Wave')
plt.show()  # Automatically captured
""")
        # List artifacts
        artifacts = sandbox.list_artifacts()
        print(f"Created {len(artifacts)} artifacts")

        # Get artifact directory
        artifacts_dir = sandbox.artifacts_dir
        print(artifacts_dir, artifacts)
        assert len(artifacts) >= 1 and artifacts[0].read().startswith(b"\x89PNG")


asyncio.run(main())
