"""Models and data of momu-live (installed as ``momu_live.models``).

Importable without librosa, mediapipe, python-osc or mido (the GPU training box lacks them).
"""
