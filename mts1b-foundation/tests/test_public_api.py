import mts1b_foundation

EXPECTED = {
    "ETF", "GENESIS_HASH", "OHLCV_FIELDS", "STATE_COMMAND_CONTEXT", "STREAMS", "UNLIMITED",
    "AccountSnapshot", "Alert", "AlertDeliveryError", "AlertSink", "AlertStatus", "Heartbeat",
    "alert_fingerprint", "alert_labels", "HaltTrading", "ReduceTrading", "ResumeTrading",
    "SignedStateCommand", "state_command_bytes",
    "MULTI_SLEEVE_STRATEGY", "RebalanceReport", "SleeveAllocation",
    "Allocation",
    "TREASURY_FUNDS_BUCKET", "REPLAY_CLOCK_BUCKET", "ClockTick", "CorporateAction",
    "CommandAnswered", "answers_subject", "StreamingMarketDataProtocol",
    "FUND_COMMAND_CONTEXT", "ConfigureFund", "FundNav", "FieldError",
    "StrategyTransition", "StrategyCommand", "STRATEGY_COMMAND_CONTEXT",
    "AssetClass", "AuditRecord", "Bar", "BrokerError", "BrokerProtocol", "BrokerQuery",
    "BrokerRejected", "BrokerTransportError", "BrokerUnknownOutcome", "CancelOrder", "Clock",
    "CommandReply", "ConnectionState", "CryptoPair", "DeadLetter", "Denial", "DenialCode",
    "Equity", "EventContract", "ExecType", "ExecutionReport", "Fill", "FundConfig", "Future",
    "FxPair", "InMemoryMarketData", "InMemoryPublisher", "Instrument", "MarketDataProtocol",
    "MtsError", "Option", "OptionRight", "Order", "OrderEvent", "OrderEventType", "OrderStatus",
    "OrderStatusQuery", "OrderType", "PanelError", "Position", "PublisherProtocol", "Quote",
    "ReplaceOrder",
    "ReplaceRequest", "ReplyCode", "RiskEnvelope", "SetTradingState", "Severity", "Side", "Signal",
    "StrategySpec", "StrategyState", "SubjectError", "SubmitOrder", "Symbol", "SystemClock",
    "TargetPortfolio", "TaxLotMethod", "TimeInForce", "Trade", "TradingSession", "TradingState",
    "TradingStateChange", "UniversePanel", "ValidationFailed", "WireModel", "__version__",
    "check_publishable", "deterministic_id", "dlq_subject", "domain_of", "export_schemas",
    "fit_to_domain", "instrument_adapter", "is_symbol", "missing_members", "model_for_subject",
    "new_event_id", "new_order_id", "parse_message", "stream_name", "subject",
    "symbol_of_subject", "symbol_subject", "symbol_to_token", "to_day", "token_to_symbol",
    "uuid7",
}


def test_public_surface_is_pinned() -> None:
    assert set(mts1b_foundation.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(mts1b_foundation, name), name


def test_version_matches_distribution() -> None:
    from importlib.metadata import version

    assert mts1b_foundation.__version__ == version("mts1b-foundation")
