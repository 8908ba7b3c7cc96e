// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {EIP712Upgradeable} from "@openzeppelin/contracts-upgradeable/utils/cryptography/EIP712Upgradeable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title DataMarketplace
/// @notice Escrow and batch settlement of the PAT segment market.
///
/// Consumers deposit PAT into escrow and sign EIP-712 `Order`s off chain. The broker's
/// engine matches them, and submits accepted fills in batches through {settleBatch}. A
/// settled fill debits the consumer's escrow by `qty * ask`, credits each provider
/// `units * bid` and the broker the spread `qty * (ask - bid)`, and records the consumer's
/// access right, all in storage: no token moves per fill (Ocean's "lazy transfer").
/// Providers and the broker pull their balances with {withdrawEarnings} and
/// {withdrawBrokerEarnings}.
///
/// Accounting invariant: the PAT balance of this contract equals the sum of all escrows
/// plus the sum of all provider earnings plus {brokerEarnings} (tokens sent here
/// directly, outside {deposit}, are the only excess).
///
/// @dev UUPS upgradeable behind an ERC1967Proxy; all state lives in one ERC-7201
///      namespaced struct, so upgrades and inherited OZ storage never collide.
///      Uses the storage-based ReentrancyGuard (namespaced, proxy-safe) rather than the
///      transient one so the same bytecode runs on chains without EIP-1153.
/// @custom:oz-upgrades-unsafe-allow constructor
contract DataMarketplace is
    Initializable,
    UUPSUpgradeable,
    Ownable2StepUpgradeable,
    EIP712Upgradeable,
    ReentrancyGuard
{
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------ types

    /// @notice A consumer's signed intent to buy `qty` units of `market`.
    /// @param maxPrice highest acceptable ask PER UNIT, in PAT base units
    /// @param deadline unix seconds by which the broker must have accepted the order
    struct Order {
        address consumer;
        bytes32 market;
        uint256 qty;
        uint256 maxPrice;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice An order the broker accepted, with the prices and the providers' units.
    /// @param ask price per unit the consumer pays
    /// @param bid price per unit each provider is credited
    /// @param acceptedAt unix seconds at which the broker's engine accepted (journaled) the order
    struct Fill {
        bytes32 fillId;
        Order order;
        uint256 ask;
        uint256 bid;
        uint64 acceptedAt;
        address[] providers;
        uint256[] units;
    }

    /// @notice A consumer's pending escrow withdrawal.
    struct WithdrawalRequest {
        uint256 amount;
        uint64 readyAt;
    }

    /// @custom:storage-location erc7201:pat.storage.DataMarketplace
    struct MarketplaceStorage {
        IERC20 pat;
        address broker;
        address brokerWallet;
        address usersPoolWallet;
        uint16 brokerMarginBps;
        uint8 phase;
        bool paused;
        uint64 withdrawalDelay;
        uint256 brokerEarnings;
        mapping(address consumer => uint256) escrow;
        mapping(address consumer => WithdrawalRequest) pendingWithdrawal;
        mapping(address provider => uint256) earnings;
        /// consumer of each settled fill; non-zero iff the fill id is settled
        mapping(bytes32 fillId => address) fillConsumer;
        /// used nonces, 256 per slot (bit `nonce & 255` of word `nonce >> 8`), so a
        /// consumer counting nonces up pays a fresh slot once per 256 orders
        mapping(address consumer => mapping(uint256 word => uint256 bits)) nonceBitmap;
        /// total units bought, per consumer and market
        mapping(address consumer => mapping(bytes32 market => uint256)) access;
    }

    // -------------------------------------------------------------- constants

    /// @notice EIP-712 type hash of {Order}.
    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address consumer,bytes32 market,uint256 qty,uint256 maxPrice,uint256 nonce,uint256 deadline)"
    );

    /// @notice Largest number of fills one {settleBatch} call accepts.
    uint256 public constant MAX_BATCH = 1000;
    /// @notice Upper bound of {setBrokerMargin}: 50 %.
    uint16 public constant MAX_BROKER_MARGIN_BPS = 5000;
    /// @notice Upper bound of {setWithdrawalDelay}, so escrow can never be locked for long.
    uint64 public constant MAX_WITHDRAWAL_DELAY = 30 days;
    /// @notice Withdrawal delay set by {initialize}.
    uint64 public constant DEFAULT_WITHDRAWAL_DELAY = 3600;
    uint8 public constant FIRST_PHASE = 1;
    uint8 public constant LAST_PHASE = 4;

    // Reason codes of {FillRejected}, in the order the checks run. The Rust client maps them.
    uint8 public constant REJECT_FILL_ID_USED = 1;
    uint8 public constant REJECT_BAD_SIGNATURE = 2;
    uint8 public constant REJECT_NONCE_USED = 3;
    uint8 public constant REJECT_EXPIRED = 4;
    uint8 public constant REJECT_ASK_ABOVE_MAX = 5;
    uint8 public constant REJECT_MARGIN_EXCEEDED = 6;
    uint8 public constant REJECT_BAD_UNITS = 7;
    uint8 public constant REJECT_INSUFFICIENT_ESCROW = 8;

    uint256 private constant BPS = 10_000;

    // keccak256(abi.encode(uint256(keccak256("pat.storage.DataMarketplace")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x0cbe2226c92cca3dcc1e6cd12fe81a55286477d50ba3a7a5335ed831ccafbe00;

    // ----------------------------------------------------------------- events

    event FillSettled(
        bytes32 indexed fillId, address indexed consumer, bytes32 indexed market, uint256 qty, uint256 ask, uint256 bid
    );
    event ProviderCredited(bytes32 indexed fillId, address indexed provider, uint256 units, uint256 amount);
    event FillRejected(bytes32 indexed fillId, uint8 reason);

    event Deposited(address indexed consumer, uint256 amount);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint64 readyAt);
    event WithdrawalCancelled(address indexed consumer);
    event Withdrawn(address indexed consumer, uint256 amount);
    event EarningsWithdrawn(address indexed provider, uint256 amount);
    event BrokerEarningsWithdrawn(address indexed brokerWallet, uint256 amount);

    event BrokerSet(address indexed previous, address indexed current);
    event BrokerWalletSet(address indexed previous, address indexed current);
    event UsersPoolWalletSet(address indexed previous, address indexed current);
    event BrokerMarginSet(uint16 previous, uint16 current);
    event WithdrawalDelaySet(uint64 previous, uint64 current);
    event PhaseAdvanced(uint8 previous, uint8 current);
    event PausedSet(bool paused);

    // ----------------------------------------------------------------- errors

    error NotBroker(address caller);
    error NotBrokerOrOwner(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error MarketPaused();
    error EmptyBatch();
    error BatchTooLarge(uint256 size, uint256 max);
    error LengthMismatch(uint256 fills, uint256 signatures);
    error BrokerMarginTooHigh(uint16 bps, uint16 max);
    error WithdrawalDelayTooLong(uint64 delay, uint64 max);
    error InvalidPhase(uint8 current, uint8 requested);
    error InsufficientEscrow(uint256 available, uint256 requested);
    error NoPendingWithdrawal();
    error WithdrawalNotReady(uint64 readyAt);
    error NothingToWithdraw();
    error RenounceOwnershipDisabled();

    // -------------------------------------------------------------- modifiers

    modifier onlyBroker() {
        if (msg.sender != _s().broker) revert NotBroker(msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (_s().paused) revert MarketPaused();
        _;
    }

    // --------------------------------------------------------- initialization

    constructor() {
        _disableInitializers();
    }

    /// @notice Initializes the proxy's state; callable once.
    /// @param owner_ governance owner (upgrades, margin, wallets, phase, pause)
    /// @param pat_ the PAT token
    /// @param broker_ the only account that may call {settleBatch}
    /// @param brokerWallet_ receives the broker's spread on {withdrawBrokerEarnings}
    /// @param usersPoolWallet_ the users' pool wallet (reserved for later phases)
    /// @param brokerMarginBps_ cap on (ask - bid) / ask, in basis points, at most 5000
    function initialize(
        address owner_,
        IERC20 pat_,
        address broker_,
        address brokerWallet_,
        address usersPoolWallet_,
        uint16 brokerMarginBps_
    ) external initializer {
        if (address(pat_) == address(0)) revert ZeroAddress();
        __Ownable_init(owner_);
        __Ownable2Step_init();
        __EIP712_init("PAT Data Marketplace", "1");

        MarketplaceStorage storage $ = _s();
        $.pat = pat_;
        $.phase = FIRST_PHASE;
        emit PhaseAdvanced(0, FIRST_PHASE);
        _setBroker(broker_);
        _setBrokerWallet(brokerWallet_);
        _setUsersPoolWallet(usersPoolWallet_);
        _setBrokerMargin(brokerMarginBps_);
        _setWithdrawalDelay(DEFAULT_WITHDRAWAL_DELAY);
    }

    // ------------------------------------------------------------- settlement

    /// @notice Settles a batch of accepted fills, each against its consumer's signed order.
    /// @dev Each fill is atomic ON ITS OWN: the checks below run in this order and the
    ///      first that fails skips that fill with {FillRejected} and the batch goes on.
    ///      One bad order (a consumer who withdrew escrow, a replayed id, a bad signature)
    ///      must not block a batch of good ones, and the engine learns the outcome per
    ///      fill from the events, so it can release the rejected fills' units and retry
    ///      nothing else. Checks (reason code):
    ///        1 fill id already settled; 2 signature does not recover to order.consumer;
    ///        3 consumer's nonce already used; 4 acceptedAt after the order's deadline or
    ///        in the future; 5 ask above maxPrice; 6 bid above ask or spread above the
    ///        broker margin cap; 7 bad units (qty 0, no providers, length mismatch, zero
    ///        provider, sum(units) != qty); 8 escrow below qty * ask (or qty * ask overflows).
    ///      All arithmetic on fill data is checked without reverting, so huge values give a
    ///      rejection and never revert the batch. The whole call reverts only for: caller
    ///      not broker, paused, length mismatch, empty batch, batch above MAX_BATCH.
    /// @param fills the accepted fills
    /// @param signatures 65-byte ECDSA signature of each fill's order digest ({hashOrder})
    function settleBatch(Fill[] calldata fills, bytes[] calldata signatures) external onlyBroker whenNotPaused {
        uint256 n = fills.length;
        if (n != signatures.length) revert LengthMismatch(n, signatures.length);
        if (n == 0) revert EmptyBatch();
        if (n > MAX_BATCH) revert BatchTooLarge(n, MAX_BATCH);

        MarketplaceStorage storage $ = _s();
        bytes32 domain = _domainSeparatorV4(); // once per batch, not per fill
        uint256 spreadTotal;
        for (uint256 i; i < n; ++i) {
            Fill calldata f = fills[i];
            (uint8 reason, uint256 cost) = _checkFill($, domain, f, signatures[i]);
            if (reason != 0) {
                emit FillRejected(f.fillId, reason);
            } else {
                spreadTotal += _applyFill($, f, cost);
            }
        }
        // One storage write for the broker's share of the whole batch. Cannot overflow:
        // it is bounded by the tokens held in escrow.
        if (spreadTotal != 0) $.brokerEarnings += spreadTotal;
    }

    /// @dev Returns (0, qty * ask) if the fill may settle, else (reason, 0). Never reverts.
    function _checkFill(MarketplaceStorage storage $, bytes32 domain, Fill calldata f, bytes calldata signature)
        private
        view
        returns (uint8 reason, uint256 cost)
    {
        if ($.fillConsumer[f.fillId] != address(0)) return (REJECT_FILL_ID_USED, 0);

        Order calldata o = f.order;
        bytes32 digest = MessageHashUtils.toTypedDataHash(domain, hashOrderStruct(o));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != o.consumer) return (REJECT_BAD_SIGNATURE, 0);

        if (_isNonceUsed($, o.consumer, o.nonce)) return (REJECT_NONCE_USED, 0);

        // Seconds of validator skew are irrelevant to deadlines of minutes or more.
        // forge-lint: disable-next-line(block-timestamp)
        if (f.acceptedAt > o.deadline || f.acceptedAt > block.timestamp) return (REJECT_EXPIRED, 0);

        uint256 ask = f.ask;
        if (ask > o.maxPrice) return (REJECT_ASK_ABOVE_MAX, 0);

        // (ask - bid) * 10000 > ask * bps  <=>  ask - bid > floor(ask * bps / 10000), exact
        // for integers, and mulDiv cannot overflow (its result is at most ask).
        if (f.bid > ask || ask - f.bid > Math.mulDiv(ask, $.brokerMarginBps, BPS)) {
            return (REJECT_MARGIN_EXCEEDED, 0);
        }

        if (!_unitsValid(o.qty, f.providers, f.units)) return (REJECT_BAD_UNITS, 0);

        bool ok;
        (ok, cost) = Math.tryMul(o.qty, ask);
        if (!ok || $.escrow[o.consumer] < cost) return (REJECT_INSUFFICIENT_ESCROW, 0);
        return (0, cost);
    }

    /// @dev qty > 0, one unit count per provider, at least one provider, no zero address,
    ///      and the counts sum to qty. Sums never overflow: each step stays <= qty.
    function _unitsValid(uint256 qty, address[] calldata providers, uint256[] calldata units)
        private
        pure
        returns (bool)
    {
        uint256 m = providers.length;
        if (qty == 0 || m == 0 || m != units.length) return false;
        uint256 sum;
        for (uint256 j; j < m; ++j) {
            if (providers[j] == address(0) || units[j] > qty - sum) return false;
            sum += units[j];
        }
        return sum == qty;
    }

    /// @dev Applies a checked fill; cannot fail. Returns the broker's spread.
    ///      No overflow is possible: every credit is part of `cost`, which was in escrow,
    ///      so each balance stays below the token's total supply.
    function _applyFill(MarketplaceStorage storage $, Fill calldata f, uint256 cost)
        private
        returns (uint256 spread)
    {
        Order calldata o = f.order;
        address consumer = o.consumer;
        bytes32 fillId = f.fillId;
        uint256 bid = f.bid;

        $.fillConsumer[fillId] = consumer;
        $.nonceBitmap[consumer][o.nonce >> 8] |= uint256(1) << (o.nonce & 0xff);
        $.escrow[consumer] -= cost;
        $.access[consumer][o.market] = Math.saturatingAdd($.access[consumer][o.market], o.qty);

        uint256 credited;
        uint256 m = f.providers.length;
        for (uint256 j; j < m; ++j) {
            address provider = f.providers[j];
            uint256 u = f.units[j];
            uint256 amount = u * bid;
            $.earnings[provider] += amount;
            credited += amount;
            emit ProviderCredited(fillId, provider, u, amount);
        }
        // credited = qty * bid <= qty * ask = cost
        spread = cost - credited;
        emit FillSettled(fillId, consumer, o.market, o.qty, f.ask, bid);
    }

    // ----------------------------------------------------------------- escrow

    /// @notice Deposits `amount` PAT (approved beforehand) into the caller's escrow.
    function deposit(uint256 amount) external nonReentrant whenNotPaused {
        _deposit(amount);
    }

    /// @notice Approves through EIP-2612 permit and deposits, in one transaction.
    /// @dev The permit call is wrapped in try/catch: if someone front-ran the same permit,
    ///      the allowance is already there and the deposit still succeeds; if the permit
    ///      was bad, the transfer reverts for lack of allowance.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
        whenNotPaused
    {
        try IERC20Permit(address(_s().pat)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    function _deposit(uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        MarketplaceStorage storage $ = _s();
        $.pat.safeTransferFrom(msg.sender, address(this), amount);
        $.escrow[msg.sender] += amount;
        emit Deposited(msg.sender, amount);
    }

    /// @notice Starts a withdrawal of `amount` from the caller's escrow, payable by
    ///         {withdraw} after {withdrawalDelay} seconds. Replaces any pending request and
    ///         restarts its clock.
    /// @dev Two steps, because the broker may already have accepted fills against this
    ///      escrow that are not yet settled on chain. The engine watches
    ///      {WithdrawalRequested}, stops accepting orders against the requested amount, and
    ///      settles what it accepted within the delay. Settlement may still debit the
    ///      escrow during the delay; {withdraw} then pays min(requested, escrow).
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        MarketplaceStorage storage $ = _s();
        uint256 available = $.escrow[msg.sender];
        if (amount > available) revert InsufficientEscrow(available, amount);
        uint64 readyAt = uint64(block.timestamp) + $.withdrawalDelay;
        $.pendingWithdrawal[msg.sender] = WithdrawalRequest(amount, readyAt);
        emit WithdrawalRequested(msg.sender, amount, readyAt);
    }

    /// @notice Cancels the caller's pending withdrawal request.
    function cancelWithdrawal() external {
        MarketplaceStorage storage $ = _s();
        if ($.pendingWithdrawal[msg.sender].readyAt == 0) revert NoPendingWithdrawal();
        delete $.pendingWithdrawal[msg.sender];
        emit WithdrawalCancelled(msg.sender);
    }

    /// @notice Pays out the caller's pending withdrawal once it is ready: min(requested,
    ///         escrow), since fills may have settled meanwhile. Works while paused.
    function withdraw() external nonReentrant {
        MarketplaceStorage storage $ = _s();
        WithdrawalRequest memory req = $.pendingWithdrawal[msg.sender];
        if (req.readyAt == 0) revert NoPendingWithdrawal();
        // forge-lint: disable-next-line(block-timestamp) -- a delay of an hour; seconds of skew are irrelevant
        if (block.timestamp < req.readyAt) revert WithdrawalNotReady(req.readyAt);
        delete $.pendingWithdrawal[msg.sender];
        uint256 amount = Math.min(req.amount, $.escrow[msg.sender]);
        $.escrow[msg.sender] -= amount;
        if (amount != 0) $.pat.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // --------------------------------------------------------------- earnings

    /// @notice Pays the caller (a provider) all its credited earnings. Works while paused.
    function withdrawEarnings() external nonReentrant {
        MarketplaceStorage storage $ = _s();
        uint256 amount = $.earnings[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        $.earnings[msg.sender] = 0;
        $.pat.safeTransfer(msg.sender, amount);
        emit EarningsWithdrawn(msg.sender, amount);
    }

    /// @notice Pays the broker's accumulated spread to {brokerWallet}. Owner or broker only;
    ///         works while paused.
    function withdrawBrokerEarnings() external nonReentrant {
        MarketplaceStorage storage $ = _s();
        if (msg.sender != $.broker && msg.sender != owner()) revert NotBrokerOrOwner(msg.sender);
        uint256 amount = $.brokerEarnings;
        if (amount == 0) revert NothingToWithdraw();
        $.brokerEarnings = 0;
        address wallet = $.brokerWallet;
        $.pat.safeTransfer(wallet, amount);
        emit BrokerEarningsWithdrawn(wallet, amount);
    }

    // ------------------------------------------------------------- governance

    /// @notice Sets the cap on (ask - bid) / ask, in basis points (at most 5000 = 50 %).
    function setBrokerMargin(uint16 bps) external onlyOwner {
        _setBrokerMargin(bps);
    }

    function setBrokerWallet(address wallet) external onlyOwner {
        _setBrokerWallet(wallet);
    }

    function setUsersPoolWallet(address wallet) external onlyOwner {
        _setUsersPoolWallet(wallet);
    }

    function setBroker(address broker_) external onlyOwner {
        _setBroker(broker_);
    }

    /// @notice Sets the escrow withdrawal delay for requests made from now on.
    function setWithdrawalDelay(uint64 delay) external onlyOwner {
        _setWithdrawalDelay(delay);
    }

    /// @notice Moves the market to a later phase (1 spot, 2 forwards, 3 synthetics,
    ///         4 options); strictly forward, never back.
    function advancePhase(uint8 to) external onlyOwner {
        MarketplaceStorage storage $ = _s();
        uint8 current = $.phase;
        if (to <= current || to > LAST_PHASE) revert InvalidPhase(current, to);
        $.phase = to;
        emit PhaseAdvanced(current, to);
    }

    /// @notice Emergency pause: stops settlement and deposits. Withdrawals of escrow and
    ///         earnings keep working, so a pause never traps funds.
    function setPaused(bool paused_) external onlyOwner {
        _s().paused = paused_;
        emit PausedSet(paused_);
    }

    /// @notice Disabled: an ownerless marketplace could never be upgraded or unpaused.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceOwnershipDisabled();
    }

    function _authorizeUpgrade(address) internal override onlyOwner {}

    function _setBrokerMargin(uint16 bps) private {
        if (bps > MAX_BROKER_MARGIN_BPS) revert BrokerMarginTooHigh(bps, MAX_BROKER_MARGIN_BPS);
        MarketplaceStorage storage $ = _s();
        emit BrokerMarginSet($.brokerMarginBps, bps);
        $.brokerMarginBps = bps;
    }

    function _setBrokerWallet(address wallet) private {
        if (wallet == address(0)) revert ZeroAddress();
        MarketplaceStorage storage $ = _s();
        emit BrokerWalletSet($.brokerWallet, wallet);
        $.brokerWallet = wallet;
    }

    function _setUsersPoolWallet(address wallet) private {
        if (wallet == address(0)) revert ZeroAddress();
        MarketplaceStorage storage $ = _s();
        emit UsersPoolWalletSet($.usersPoolWallet, wallet);
        $.usersPoolWallet = wallet;
    }

    function _setBroker(address broker_) private {
        if (broker_ == address(0)) revert ZeroAddress();
        MarketplaceStorage storage $ = _s();
        emit BrokerSet($.broker, broker_);
        $.broker = broker_;
    }

    function _setWithdrawalDelay(uint64 delay) private {
        if (delay > MAX_WITHDRAWAL_DELAY) revert WithdrawalDelayTooLong(delay, MAX_WITHDRAWAL_DELAY);
        MarketplaceStorage storage $ = _s();
        emit WithdrawalDelaySet($.withdrawalDelay, delay);
        $.withdrawalDelay = delay;
    }

    // ------------------------------------------------------------------ views

    /// @notice Full EIP-712 digest of `order` in this contract's domain: what the
    ///         consumer signs.
    function hashOrder(Order calldata order) external view returns (bytes32) {
        return _hashTypedDataV4(hashOrderStruct(order));
    }

    /// @notice EIP-712 struct hash of `order` (domain-independent).
    function hashOrderStruct(Order calldata order) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                ORDER_TYPEHASH, order.consumer, order.market, order.qty, order.maxPrice, order.nonce, order.deadline
            )
        );
    }

    /// @notice EIP-712 domain separator: name "PAT Data Marketplace", version "1", this
    ///         chain id, this (proxy) address.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function escrowOf(address consumer) external view returns (uint256) {
        return _s().escrow[consumer];
    }

    /// @return amount requested (0 if none)
    /// @return readyAt unix seconds from which {withdraw} pays (0 if none)
    function pendingWithdrawalOf(address consumer) external view returns (uint256 amount, uint64 readyAt) {
        WithdrawalRequest storage req = _s().pendingWithdrawal[consumer];
        return (req.amount, req.readyAt);
    }

    function earningsOf(address provider) external view returns (uint256) {
        return _s().earnings[provider];
    }

    function brokerEarnings() external view returns (uint256) {
        return _s().brokerEarnings;
    }

    function isFillSettled(bytes32 fillId) external view returns (bool) {
        return _s().fillConsumer[fillId] != address(0);
    }

    /// @notice Settlement status of many fill ids at once (the engine checks before a retry).
    function settledFills(bytes32[] calldata ids) external view returns (bool[] memory settled) {
        MarketplaceStorage storage $ = _s();
        settled = new bool[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            settled[i] = $.fillConsumer[ids[i]] != address(0);
        }
    }

    /// @notice Consumer of a settled fill, or the zero address if not settled.
    function fillConsumerOf(bytes32 fillId) external view returns (address) {
        return _s().fillConsumer[fillId];
    }

    function isNonceUsed(address consumer, uint256 nonce) external view returns (bool) {
        return _isNonceUsed(_s(), consumer, nonce);
    }

    function _isNonceUsed(MarketplaceStorage storage $, address consumer, uint256 nonce) private view returns (bool) {
        return $.nonceBitmap[consumer][nonce >> 8] & (uint256(1) << (nonce & 0xff)) != 0;
    }

    /// @notice Total units of `market` that `consumer` has bought (saturates at 2^256-1).
    function accessOf(address consumer, bytes32 market) external view returns (uint256) {
        return _s().access[consumer][market];
    }

    function brokerMarginBps() external view returns (uint16) {
        return _s().brokerMarginBps;
    }

    function phase() external view returns (uint8) {
        return _s().phase;
    }

    function paused() external view returns (bool) {
        return _s().paused;
    }

    function broker() external view returns (address) {
        return _s().broker;
    }

    function brokerWallet() external view returns (address) {
        return _s().brokerWallet;
    }

    function usersPoolWallet() external view returns (address) {
        return _s().usersPoolWallet;
    }

    function pat() external view returns (IERC20) {
        return _s().pat;
    }

    function withdrawalDelay() external view returns (uint64) {
        return _s().withdrawalDelay;
    }

    function _s() private pure returns (MarketplaceStorage storage $) {
        assembly {
            $.slot := STORAGE_LOCATION
        }
    }
}
