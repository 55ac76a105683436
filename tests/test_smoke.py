def test_demo_is_loaded(demo):
    assert demo.user("admin").organization.name == "定州市政务服务管理办公室"
