from kochat import processes


def test_the_launch_is_read_from_the_launchers_environment(monkeypatch):
    for name in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert processes.launch() == processes.Launch(1, "one process") and processes.is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert processes.launch() == processes.Launch(4, "ddp") and not processes.is_main()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch --config_file configs/fsdp_qlora.yaml sets
    assert processes.launch().fsdp
