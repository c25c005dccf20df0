//! Files: path resolution and change watching.
