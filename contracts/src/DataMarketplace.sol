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
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title DataMarketplace
/// @notice Escrow and batch settlement of the PAT segment market.
///
/// Consumers deposit PAT into escrow and sign EIP-712 `Order`s off chain. The broker's
/// engine matches them, and submits accepted fills in batches through {settleBatch}. A
/// settled fill debits the consumer's escrow by `qty * ask`, marks the consumer's nonce
/// used, credits each provider `units * bid` and the broker the spread `qty * (ask - bid)`.
/// No token moves per fill (Ocean's "lazy transfer"), and settlement writes as little
/// storage as it can: one slot per consumer (escrow and the current nonce word together),
/// and per batch the broker's total and one Merkle root. The root commits the batch's
/// provider credits and access rights as leaves; providers claim their credits with
/// proofs ({claimCredits}) into balances they withdraw ({withdrawEarnings}), and anyone can
/// prove a consumer's access on chain ({verifyAccess}).
///
/// Accounting invariant: the PAT balance of this contract equals the sum of all escrows
/// plus the sum of all claimed provider earnings plus {unclaimedCredits} plus
/// {brokerEarnings} (tokens sent here directly, outside {deposit}, are the only excess).
///
/// Governance (V2, finding L-5): the owner is meant to be an OpenZeppelin
/// TimelockController, so every owner function waits the timelock's delay, and upgrades
/// are refused unless it is: {_authorizeUpgrade} accepts only an owner whose code is this
/// build's TimelockController with a minimum delay of at least 2 days (0 on a devnet), see
/// {governanceTimelocked}. The emergency pause does not wait: a {guardian} set by the owner may
/// pause at once; only the owner unpauses.
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
    /// @param ask price per unit the consumer pays (the fill id is the order's digest, {hashOrder})
    /// @param bid price per unit each provider is credited
    /// @param acceptedAt unix seconds at which the broker's engine accepted (journaled) the order
    ///      {settleBatch} takes fills packed (see {encodeBatch}); this is their logical form.
    struct Fill {
        Order order;
        uint128 ask;
        uint128 bid;
        uint64 acceptedAt;
        address[] providers;
        uint64[] units;
    }

    /// @notice A consumer's pending escrow withdrawal.
    /// @param readyAt unix seconds from which {withdraw} pays, if the market is not paused
    ///        meanwhile (a pause pushes it back, see {pauseClock})
    /// @param pauseClock {pauseClock} when the request was made (V2; 0 for V1 requests)
    struct WithdrawalRequest {
        uint256 amount;
        uint64 readyAt;
        uint64 pauseClock;
    }

    /// @notice A consumer's cancelled nonces of one 64-nonce word ({invalidateNonces}).
    /// @param effective bits cancelled for good
    /// @param pending bits cancelled from `effectiveAt` on
    struct NonceCancel {
        uint64 effective;
        uint64 pending;
        uint64 effectiveAt;
    }

    /// @notice A provider's claim of one committed credit: leaf `leaf` of batch `batchId`,
    ///         `keccak256(abi.encode(leaf, provider, amount))`, with its Merkle proof.
    struct Claim {
        uint256 batchId;
        uint256 leaf;
        address provider;
        uint256 amount;
        bytes32[] proof;
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
        /// provider credits committed by batch roots and not claimed yet
        uint256 unclaimedCredits;
        /// batches recorded so far (ids 1..batchCount)
        uint64 batchCount;
        /// leaves committed so far: leaf indexes are global, the next batch starts here
        uint64 leafCount;
        /// per consumer, one slot: escrow (bits 0-126), the "has cancelled nonces" flag
        /// (bit 127, V2), the cached nonce word index (bits 128-191) and that word's 64
        /// used-nonce bits (bits 192-255)
        mapping(address consumer => uint256) account;
        mapping(address consumer => WithdrawalRequest) pendingWithdrawal;
        /// claimed provider credits, withdrawable
        mapping(address provider => uint256) earnings;
        /// used nonces outside the cached word, 64 per word (bit `nonce & 63` of word
        /// `nonce >> 6`); a consumer counting nonces up writes here once per 64 orders
        mapping(address consumer => mapping(uint256 word => uint256 bits)) nonceBitmap;
        /// Merkle root of each batch's leaves
        mapping(uint256 batchId => bytes32) batchRoot;
        /// claimed credit leaves, 256 per slot (bit `leaf & 255` of word `leaf >> 8`)
        mapping(uint256 word => uint256 bits) claimed;
        // ---- V2 (appended; V1 state above is unchanged). One slot:
        /// seconds after an order's deadline during which its fill may still settle
        uint64 maxSettleLag;
        /// seconds after a withdrawal request's readyAt during which {withdraw} pays
        uint64 withdrawalWindow;
        /// unix seconds the current pause began (0 when not paused)
        uint64 pausedSince;
        /// seconds the market spent paused in pauses that ended
        uint64 pausedTotal;
        /// nonces the consumers cancelled, per 64-nonce word
        mapping(address consumer => mapping(uint256 word => NonceCancel)) nonceCancel;
        /// may pause at once, not unpause ({setPaused}); set by the owner (L-5). One slot.
        address guardian;
    }

    // -------------------------------------------------------------- constants

    /// @notice EIP-712 type hash of {Order}.
    bytes32 public constant ORDER_TYPEHASH =
        keccak256("Order(address consumer,bytes32 market,uint256 qty,uint256 maxPrice,uint256 nonce,uint256 deadline)");

    /// @notice Largest number of fills one {settleBatch} call accepts.
    uint256 public constant MAX_BATCH = 1000;
    /// @notice Upper bound of {setBrokerMargin}: 50 %.
    uint16 public constant MAX_BROKER_MARGIN_BPS = 5000;
    /// @notice Upper bound of {setWithdrawalDelay}, so escrow can never be locked for long.
    uint64 public constant MAX_WITHDRAWAL_DELAY = 30 days;
    /// @notice Withdrawal delay set by {initialize}.
    uint64 public constant DEFAULT_WITHDRAWAL_DELAY = 3600;
    /// @notice Bounds of {setMaxSettleLag}; it is also at most {withdrawalDelay}.
    uint64 public constant MIN_SETTLE_LAG = 10 minutes;
    uint64 public constant MAX_SETTLE_LAG = 7 days;
    /// @notice Settle lag set by {initialize} (and the usual choice for {initializeV2}).
    uint64 public constant DEFAULT_SETTLE_LAG = 1 hours;
    /// @notice Bounds of {setWithdrawalWindow}.
    uint64 public constant MIN_WITHDRAWAL_WINDOW = 1 hours;
    uint64 public constant MAX_WITHDRAWAL_WINDOW = 30 days;
    /// @notice Withdrawal window set by {initialize}.
    uint64 public constant DEFAULT_WITHDRAWAL_WINDOW = 1 days;
    // L-5. Internal, not public: every public function adds a selector to the dispatcher,
    // and these three would lengthen its path to settleBatch and claimCredits (their gas is
    // pinned in snapshots/); {governanceTimelocked} reports what they decide.
    /// @dev Least {TimelockController.getMinDelay} of an owner that may upgrade: 2 days,
    ///      Compound's Timelock MINIMUM_DELAY. Long enough for anyone to read a scheduled
    ///      upgrade and for a consumer to request and take out escrow under the default
    ///      withdrawal delay (1 hour) and window (1 day) before it executes.
    uint256 internal constant MIN_TIMELOCK_DELAY = 2 days;
    /// @dev Chain id of anvil (and hardhat): a local devnet, where the least delay is 0 so
    ///      tests and the devnet need not wait two days. Never deploy to a chain with this id.
    uint256 internal constant DEVNET_CHAIN_ID = 31337;
    /// @dev `extcodehash` of OpenZeppelin 5.7.0's TimelockController built with this
    ///      project's settings (contracts/foundry.toml; chain/artifacts/TimelockController.json),
    ///      the only owner code {_authorizeUpgrade} accepts. Its code is what proves that
    ///      every call it makes waited its delay; a contract merely answering `getMinDelay`
    ///      proves nothing. It has no immutables, so every deployment of it has this hash;
    ///      test/Timelock.t.sol checks it against the build. A new OpenZeppelin or solc
    ///      changes it: a future implementation must then still accept the timelock that owns
    ///      the deployed proxy (or the owner moves to a timelock of the new build first).
    bytes32 internal constant TIMELOCK_CODEHASH = 0x33b0f520fec53fff42a9d666189871aa2aad68e4ce6c951b92d457687c2278d6;
    uint8 public constant FIRST_PHASE = 1;
    uint8 public constant LAST_PHASE = 4;

    // Reason codes of {FillRejected}, in the order the checks run. The Rust client maps them.
    // Code 1 (the fill id already settled) is retired: the consumer's nonce is the
    // idempotency key, since a fill id (the order's digest) has exactly one (consumer, nonce).
    uint8 public constant REJECT_BAD_SIGNATURE = 2;
    uint8 public constant REJECT_NONCE_USED = 3;
    uint8 public constant REJECT_EXPIRED = 4;
    uint8 public constant REJECT_ASK_ABOVE_MAX = 5;
    uint8 public constant REJECT_MARGIN_EXCEEDED = 6;
    uint8 public constant REJECT_BAD_UNITS = 7;
    uint8 public constant REJECT_INSUFFICIENT_ESCROW = 8;
    // V2: checked after the seven above.
    /// @notice The block is more than {maxSettleLag} seconds past the order's deadline.
    uint8 public constant REJECT_SETTLED_TOO_LATE = 9;
    /// @notice The consumer cancelled the order's nonce ({invalidateNonces}) and it took effect.
    uint8 public constant REJECT_NONCE_INVALIDATED = 10;

    uint256 private constant BPS = 10_000;
    /// @dev The account word: escrow in bits 0..126, the "has cancelled nonces" flag in bit
    ///      127 (V2; V1 escrow never reaches 2^127: PAT's supply is far below), the cached
    ///      nonce word in 128..191 and its used bits in 192..255.
    uint256 private constant ESCROW_MASK = type(uint128).max >> 1;
    uint256 private constant CANCELS_FLAG = 1 << 127;
    uint256 private constant NONCE_WORD_SHIFT = 128;
    uint256 private constant NONCE_BITS_SHIFT = 192;

    // keccak256(abi.encode(uint256(keccak256("pat.storage.DataMarketplace")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant STORAGE_LOCATION = 0x0cbe2226c92cca3dcc1e6cd12fe81a55286477d50ba3a7a5335ed831ccafbe00;

    // ----------------------------------------------------------------- events

    /// @param leaf global index of the fill's access leaf (market and qty are in it and in the
    ///        calldata); its credit leaves follow, one per provider entry in calldata order
    event FillSettled(bytes32 indexed fillId, address indexed consumer, uint256 leaf);
    event FillRejected(bytes32 indexed fillId, uint8 reason);
    /// @notice A batch with at least one settled fill: its leaves are `firstLeaf ..
    ///         firstLeaf + leafCount - 1`, committed by `root`.
    event BatchSettled(
        uint256 indexed batchId, bytes32 root, uint256 firstLeaf, uint256 leafCount, uint256 credited, uint256 spread
    );
    event CreditClaimed(uint256 indexed leaf, address indexed provider, uint256 amount);
    /// @notice {claimCredits} skipped a credit that was already claimed (V2; V1 reverted).
    event CreditClaimSkipped(uint256 indexed leaf);
    /// @notice `consumer` cancelled the nonces `(word << 6) + i` for each bit i of `mask`,
    ///         from `effectiveAt` on (see {invalidateNonces}).
    event NoncesInvalidated(address indexed consumer, uint256 indexed word, uint64 mask, uint64 effectiveAt);

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
    event MaxSettleLagSet(uint64 previous, uint64 current);
    event WithdrawalWindowSet(uint64 previous, uint64 current);
    event PhaseAdvanced(uint8 previous, uint8 current);
    event PausedSet(bool paused);
    event GuardianSet(address indexed previous, address indexed current);

    // ----------------------------------------------------------------- errors

    error NotBroker(address caller);
    error NotBrokerOrOwner(address caller);
    error ZeroAddress();
    error ZeroAmount();
    /// @notice V2 keeps escrow in 127 bits: a token whose supply could exceed them cannot be
    ///         upgraded to (an account at 2^127 or more would lose its top bit to the flag).
    error SupplyTooLarge(uint256 supply);
    error MarketPaused();
    error EmptyBatch();
    error BatchTooLarge(uint256 size, uint256 max);
    error LengthMismatch(uint256 a, uint256 b);
    error EmptyClaims();
    /// @notice {settleBatch}'s argument is not whole fill records: the record at `offset` is cut.
    error MalformedBatch(uint256 offset);
    error CreditAlreadyClaimed(uint256 leaf);
    error InvalidCreditProof(uint256 leaf);
    error BrokerMarginTooHigh(uint16 bps, uint16 max);
    error WithdrawalDelayTooLong(uint64 delay, uint64 max);
    /// @notice The withdrawal delay must be at least {maxSettleLag} (V2; V1 allowed 0).
    error WithdrawalDelayTooShort(uint64 delay, uint64 min);
    /// @notice {setMaxSettleLag} out of [MIN_SETTLE_LAG, min(MAX_SETTLE_LAG, withdrawalDelay)].
    error SettleLagOutOfRange(uint64 lag, uint64 min, uint64 max);
    error WithdrawalWindowOutOfRange(uint64 window, uint64 min, uint64 max);
    /// @notice The matured request was not withdrawn within {withdrawalWindow}; request again.
    error WithdrawalExpired(uint64 expiredAt);
    error ZeroMask();
    error InvalidPhase(uint8 current, uint8 requested);
    error InsufficientEscrow(uint256 available, uint256 requested);
    error NoPendingWithdrawal();
    error WithdrawalNotReady(uint64 readyAt);
    error NothingToWithdraw();
    error RenounceOwnershipDisabled();
    /// @notice An upgrade needs an owner that is this build's TimelockController (L-5).
    error OwnerNotTimelock(address owner);
    /// @notice An upgrade needs the owner timelock's minimum delay to be at least `min`.
    error TimelockDelayTooShort(uint256 delay, uint256 min);
    /// @notice The guardian may pause, never unpause: the owner unpauses.
    error GuardianCannotUnpause();

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
    /// @param owner_ governance owner (upgrades, margin, wallets, phase, pause); upgrades need
    ///        it to be a TimelockController ({_authorizeUpgrade}), so an account deploying
    ///        with an EOA owner moves ownership to one afterwards
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
        _setMaxSettleLag(DEFAULT_SETTLE_LAG);
        _setWithdrawalWindow(DEFAULT_WITHDRAWAL_WINDOW);
    }

    /// @notice Upgrades a V1 proxy's state to V2: sets the parameters V2 adds. Called once,
    ///         by the owner, in {upgradeToAndCall}; all V1 state is kept as it is. A proxy
    ///         deployed with V2's {initialize} already has defaults, and its owner may call
    ///         this once to set them.
    /// @param maxSettleLag_ see {setMaxSettleLag}
    /// @param withdrawalDelay_ see {setWithdrawalDelay}; V1 allowed a delay below any settle
    ///        lag (even 0), so it is set here together with the lag it must cover
    /// @param withdrawalWindow_ see {setWithdrawalWindow}
    /// @dev A V1 request keeps its readyAt; a pause going on at the upgrade starts the pause
    ///      clock from the upgrade's time.
    function initializeV2(uint64 maxSettleLag_, uint64 withdrawalDelay_, uint64 withdrawalWindow_)
        external
        reinitializer(2)
        onlyOwner
    {
        MarketplaceStorage storage $ = _s();
        uint256 supply = $.pat.totalSupply();
        if (supply > ESCROW_MASK) revert SupplyTooLarge(supply);
        // the lag first (its bound on the delay is the delay being set), then the delay >= lag
        if (maxSettleLag_ < MIN_SETTLE_LAG || maxSettleLag_ > MAX_SETTLE_LAG || maxSettleLag_ > withdrawalDelay_) {
            revert SettleLagOutOfRange(maxSettleLag_, MIN_SETTLE_LAG, _min64(MAX_SETTLE_LAG, withdrawalDelay_));
        }
        emit MaxSettleLagSet($.maxSettleLag, maxSettleLag_);
        $.maxSettleLag = maxSettleLag_;
        _setWithdrawalDelay(withdrawalDelay_);
        _setWithdrawalWindow(withdrawalWindow_);
        if ($.paused && $.pausedSince == 0) $.pausedSince = uint64(block.timestamp);
    }

    /// @notice The implementation's version: 2.
    function version() external pure virtual returns (uint256) {
        return 2;
    }

    // ------------------------------------------------------------- settlement

    /// @dev What a batch accumulates in memory: its leaves, and the totals written once.
    struct Batch {
        bytes32 domain;
        uint256 settleLag;
        uint256 firstLeaf;
        bytes32[] leaves;
        uint256 count;
        uint256 credited;
        uint256 spread;
    }

    // Packed fill record (big-endian, no padding), byte offsets:
    //   0 consumer (20) | 20 market (32) | 52 qty (8) | 60 maxPrice (32) | 92 nonce (32) |
    //   124 deadline (32) | 156 ask (16) | 172 bid (16) | 188 acceptedAt (8) | 196 r (32) |
    //   228 s (32) | 260 v (1) | 261 provider count m (4) | 265 m x (provider (20), units (8))
    uint256 private constant FILL_HEAD = 265;
    uint256 private constant PROVIDER_LEN = 28;

    /// @notice Settles a batch of accepted fills, each against its consumer's signed order.
    /// @dev `batch` is the fills packed back to back ({encodeBatch} gives the layout): 321
    ///      bytes for a fill of two providers against 768 ABI-encoded, and read in assembly
    ///      without the ABI decoder's checks. Each fill's id is its order's EIP-712 digest,
    ///      computed here.
    ///      Each fill is atomic ON ITS OWN: the checks below run in this order and the
    ///      first that fails skips that fill with {FillRejected} and the batch goes on.
    ///      One bad order (a consumer who withdrew escrow, a replayed order, a bad signature)
    ///      must not block a batch of good ones, and the engine learns the outcome per
    ///      fill from the events, so it can release the rejected fills' units and retry
    ///      nothing else. Checks (reason code):
    ///        2 signature does not recover to order.consumer; 3 consumer's nonce already
    ///        used (the order, or another with its nonce, settled: the idempotency key);
    ///        4 acceptedAt after the order's deadline or in the future; 5 ask above
    ///        maxPrice; 6 bid above ask or spread above the broker margin cap; 7 bad units
    ///        (qty 0, no providers, zero provider, sum(units) != qty); 8 escrow below qty * ask;
    ///        (V2) 9 block.timestamp > order.deadline + maxSettleLag (the order expired on
    ///        chain: a signed order can no longer settle a year later); 10 the consumer
    ///        cancelled the nonce ({invalidateNonces}) and the cancellation took effect.
    ///      A settled fill writes one storage slot (the consumer's escrow and nonce word)
    ///      and appends leaves to the batch's Merkle tree: its access leaf
    ///      keccak256(abi.encode(leaf, fillId, consumer, market, qty)) and one credit leaf
    ///      keccak256(abi.encode(leaf, provider, units * bid)) per provider entry, `leaf`
    ///      being the global index. After the loop the root, the broker's spread and the
    ///      unclaimed credit total are written once for the whole batch.
    ///      Fill values never overflow (qty < 2^64, prices < 2^128), so fill data gives a
    ///      rejection, never a revert. The whole call reverts only for: caller not broker,
    ///      paused, a batch that is not whole records, empty, or above MAX_BATCH fills.
    function settleBatch(bytes calldata batch) external onlyBroker whenNotPaused {
        (uint256 p, uint256 end, uint256 capacity) = _scan(batch);
        MarketplaceStorage storage $ = _s();
        Batch memory b = Batch({
            domain: _domainSeparatorV4(), // once per batch, not per fill
            settleLag: $.maxSettleLag,
            firstLeaf: $.leafCount,
            leaves: new bytes32[](capacity),
            count: 0,
            credited: 0,
            spread: 0
        });
        while (p < end) {
            bytes32 fillId = _digest(b.domain, p);
            (uint8 reason, uint256 account, uint256 cost) = _checkFill($, p, fillId, b.settleLag);
            if (reason != 0) emit FillRejected(fillId, reason);
            else _applyFill($, b, p, fillId, account, cost);
            unchecked {
                p += FILL_HEAD + PROVIDER_LEN * _uint(p + 261, 4); // _scan checked the records
            }
        }
        if (b.count == 0) return;

        // One write each for the whole batch. No overflow: every amount was in escrow.
        uint256 batchId = $.batchCount + 1;
        bytes32 root = _merkleRoot(b.leaves, b.count);
        $.batchCount = uint64(batchId);
        $.leafCount = uint64(b.firstLeaf + b.count);
        $.batchRoot[batchId] = root;
        $.unclaimedCredits += b.credited;
        if (b.spread != 0) $.brokerEarnings += b.spread;
        emit BatchSettled(batchId, root, b.firstLeaf, b.count, b.credited, b.spread);
    }

    /// @dev Checks that `batch` is whole records, 1 to MAX_BATCH of them. Returns its calldata
    ///      start and end and the most leaves it can commit (a fill and its providers).
    function _scan(bytes calldata batch) private pure returns (uint256 p, uint256 end, uint256 capacity) {
        unchecked {
            assembly {
                p := batch.offset
            }
            end = p + batch.length;
            uint256 n;
            for (uint256 q = p; q < end; ++n) {
                if (end - q < FILL_HEAD) revert MalformedBatch(q - p);
                uint256 m = _uint(q + 261, 4);
                if (end - q - FILL_HEAD < PROVIDER_LEN * m) revert MalformedBatch(q - p);
                q += FILL_HEAD + PROVIDER_LEN * m;
                capacity += 1 + m;
            }
            if (n == 0) revert EmptyBatch();
            if (n > MAX_BATCH) revert BatchTooLarge(n, MAX_BATCH);
        }
    }

    /// @dev The `len`-byte big-endian unsigned integer at calldata offset `at`.
    function _uint(uint256 at, uint256 len) private pure returns (uint256 v) {
        assembly {
            v := shr(sub(256, shl(3, len)), calldataload(at))
        }
    }

    function _address(uint256 at) private pure returns (address a) {
        assembly {
            a := shr(96, calldataload(at))
        }
    }

    function _word(uint256 at) private pure returns (bytes32 w) {
        assembly {
            w := calldataload(at)
        }
    }

    /// @dev The EIP-712 digest of the order of the record at `p`: the fill id.
    function _digest(bytes32 domain, uint256 p) private pure returns (bytes32) {
        bytes32 typeHash = ORDER_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 0x20), shr(96, calldataload(p))) // consumer
            mstore(add(m, 0x40), calldataload(add(p, 20))) // market
            mstore(add(m, 0x60), shr(192, calldataload(add(p, 52)))) // qty
            mstore(add(m, 0x80), calldataload(add(p, 60))) // maxPrice
            mstore(add(m, 0xa0), calldataload(add(p, 92))) // nonce
            mstore(add(m, 0xc0), calldataload(add(p, 124))) // deadline
            structHash := keccak256(m, 0xe0)
        }
        return MessageHashUtils.toTypedDataHash(domain, structHash);
    }

    /// @dev Returns (0, the consumer's account word, qty * ask) if the record at `p` may
    ///      settle, else (reason, 0, 0). Never reverts.
    function _checkFill(MarketplaceStorage storage $, uint256 p, bytes32 digest, uint256 settleLag)
        private
        view
        returns (uint8 reason, uint256 account, uint256 cost)
    {
        unchecked {
            address consumer = _address(p);
            (address signer, ECDSA.RecoverError err,) =
                ECDSA.tryRecover(digest, uint8(_uint(p + 260, 1)), _word(p + 196), _word(p + 228));
            if (err != ECDSA.RecoverError.NoError || signer != consumer) return (REJECT_BAD_SIGNATURE, 0, 0);

            account = $.account[consumer];
            if (_isNonceUsed($, consumer, account, uint256(_word(p + 92)))) return (REJECT_NONCE_USED, 0, 0);

            uint256 acceptedAt = _uint(p + 188, 8);
            // Seconds of validator skew are irrelevant to deadlines of minutes or more.
            // forge-lint: disable-next-line(block-timestamp)
            if (acceptedAt > uint256(_word(p + 124)) || acceptedAt > block.timestamp) return (REJECT_EXPIRED, 0, 0);

            uint256 ask = _uint(p + 156, 16);
            if (ask > uint256(_word(p + 60))) return (REJECT_ASK_ABOVE_MAX, 0, 0);

            // Exact in integers; no overflow, ask < 2^128.
            uint256 bid = _uint(p + 172, 16);
            if (bid > ask || (ask - bid) * BPS > ask * $.brokerMarginBps) return (REJECT_MARGIN_EXCEEDED, 0, 0);

            uint256 qty = _uint(p + 52, 8);
            if (!_unitsValid(p, qty)) return (REJECT_BAD_UNITS, 0, 0);

            cost = qty * ask; // < 2^192
            if (account & ESCROW_MASK < cost) return (REJECT_INSUFFICIENT_ESCROW, 0, 0);

            // V2: an order is settleable until maxSettleLag after its deadline, by the block's
            // clock (acceptedAt is the broker's word). Written without deadline + lag overflow.
            // forge-lint: disable-next-line(block-timestamp)
            if (block.timestamp > settleLag && block.timestamp - settleLag > uint256(_word(p + 124))) {
                return (REJECT_SETTLED_TOO_LATE, 0, 0);
            }

            // V2: nonces the consumer cancelled. Only a consumer who ever cancelled (the flag in
            // the account word already read) has its cancellation slot read: the others pay
            // nothing for it.
            uint256 nonce = uint256(_word(p + 92));
            if (account & CANCELS_FLAG != 0 && _isNonceCancelled($.nonceCancel[consumer][nonce >> 6], nonce)) {
                return (REJECT_NONCE_INVALIDATED, 0, 0);
            }
        }
    }

    /// @dev qty > 0, at least one provider, no zero address, and the units sum to qty. Sums
    ///      never overflow: each step stays <= qty.
    function _unitsValid(uint256 p, uint256 qty) private pure returns (bool valid) {
        assembly {
            let m := shr(224, calldataload(add(p, 261)))
            valid := and(gt(qty, 0), gt(m, 0))
            let left := qty
            let q := add(p, 265)
            for { let end := add(q, mul(m, 28)) } and(valid, lt(q, end)) { q := add(q, 28) } {
                let u := shr(192, calldataload(add(q, 20)))
                if or(iszero(shr(96, calldataload(q))), gt(u, left)) { valid := 0 }
                left := sub(left, u)
            }
            valid := and(valid, iszero(left))
        }
    }

    /// @dev Applies a checked fill; cannot fail. No overflow is possible: every credit is
    ///      part of `cost` (at most the escrow, a uint128), and credited = qty * bid <= cost.
    function _applyFill(
        MarketplaceStorage storage $,
        Batch memory b,
        uint256 p,
        bytes32 fillId,
        uint256 account,
        uint256 cost
    ) private {
        unchecked {
            address consumer = _address(p);
            $.account[consumer] = _useNonce($, consumer, account - cost, uint256(_word(p + 92)));

            uint256 leaf = b.firstLeaf + b.count;
            bytes32[] memory leaves = b.leaves;
            uint256 k = b.count;
            bytes32 market = _word(p + 20);
            uint256 qty = _uint(p + 52, 8);
            leaves[k++] = _accessLeaf(leaf, fillId, consumer, market, qty);
            uint256 bid = _uint(p + 172, 16);
            uint256 m = _uint(p + 261, 4);
            uint256 q = p + FILL_HEAD;
            for (uint256 j; j < m; ++j) {
                leaves[k] = _creditLeaf(leaf + 1 + j, _address(q), _uint(q + 20, 8) * bid);
                ++k;
                q += PROVIDER_LEN;
            }
            b.count = k;
            b.credited += qty * bid;
            b.spread += cost - qty * bid;
            emit FillSettled(fillId, consumer, leaf);
        }
    }

    /// @notice Packs `fills` and their 65-byte `signatures` (r, s, v) into {settleBatch}'s
    ///         argument. Reverts if a signature is not 65 bytes or a fill's providers and
    ///         units differ in length. For tests and integrators; the broker packs off chain.
    function encodeBatch(Fill[] calldata fills, bytes[] calldata signatures) external pure returns (bytes memory out) {
        if (fills.length != signatures.length) revert LengthMismatch(fills.length, signatures.length);
        for (uint256 i; i < fills.length; ++i) {
            Fill calldata f = fills[i];
            Order calldata o = f.order;
            bytes calldata sig = signatures[i];
            if (sig.length != 65) revert LengthMismatch(sig.length, 65);
            uint256 m = f.providers.length;
            if (m != f.units.length) revert LengthMismatch(m, f.units.length);
            out = bytes.concat(
                out,
                abi.encodePacked(o.consumer, o.market, SafeCast.toUint64(o.qty), o.maxPrice, o.nonce, o.deadline),
                abi.encodePacked(f.ask, f.bid, f.acceptedAt, sig, SafeCast.toUint32(m))
            );
            for (uint256 j; j < m; ++j) {
                out = bytes.concat(out, abi.encodePacked(f.providers[j], f.units[j]));
            }
        }
    }

    // ---------------------------------------------------------------- nonces

    /// @notice Cancels the caller's nonces `(word << 6) + i` for each set bit i of `mask`:
    ///         from `block.timestamp + maxSettleLag` on, a fill of an order with one of them is
    ///         rejected (reason 10). A signed order can thus be withdrawn without waiting for
    ///         its deadline (and it expires on chain maxSettleLag after the deadline anyway).
    /// @dev The delay keeps sound the fills the broker already accepted: the engine settles
    ///      an accepted fill within maxSettleLag of accepting it, so every fill accepted
    ///      before this call can still settle; the engine stops accepting these orders when
    ///      it sees {NoncesInvalidated}. Per (consumer, word) one slot: bits cancelled for
    ///      good, and bits pending until one time. A new call on a word whose pending bits
    ///      have taken effect makes them permanent first; a call before that merges the new
    ///      bits into the pending ones and moves their common time to the new one (they take
    ///      effect at most maxSettleLag later than alone). Cancelling an already used nonce
    ///      is harmless. {isNonceUsed} reports settled nonces only; {isNonceInvalidated}
    ///      reports cancellations.
    function invalidateNonces(uint256 word, uint64 mask) external {
        if (mask == 0) revert ZeroMask();
        MarketplaceStorage storage $ = _s();
        NonceCancel storage c = $.nonceCancel[msg.sender][word];
        NonceCancel memory v = c;
        // forge-lint: disable-next-line(block-timestamp)
        if (v.pending != 0 && block.timestamp >= v.effectiveAt) {
            v.effective |= v.pending;
            v.pending = 0;
        }
        uint64 effectiveAt = uint64(block.timestamp) + $.maxSettleLag;
        $.account[msg.sender] |= CANCELS_FLAG;
        c.effective = v.effective;
        c.pending = v.pending | mask;
        c.effectiveAt = effectiveAt;
        emit NoncesInvalidated(msg.sender, word, mask, effectiveAt);
    }

    /// @notice Whether `consumer`'s cancellation of `nonce` ({invalidateNonces}) is in effect now.
    function isNonceInvalidated(address consumer, uint256 nonce) external view returns (bool) {
        return _isNonceCancelled(_s().nonceCancel[consumer][nonce >> 6], nonce);
    }

    /// @notice `consumer`'s cancellations in the 64-nonce `word`: bits in effect, bits
    ///         pending, and when the pending ones take effect.
    function nonceInvalidation(address consumer, uint256 word)
        external
        view
        returns (uint64 effective, uint64 pending, uint64 effectiveAt)
    {
        NonceCancel storage c = _s().nonceCancel[consumer][word];
        return (c.effective, c.pending, c.effectiveAt);
    }

    function _isNonceCancelled(NonceCancel storage c, uint256 nonce) private view returns (bool) {
        uint64 bit = uint64(1) << uint8(nonce & 63);
        NonceCancel memory v = c;
        if (v.effective & bit != 0) return true;
        // forge-lint: disable-next-line(block-timestamp)
        return v.pending & bit != 0 && block.timestamp >= v.effectiveAt;
    }

    /// @dev Whether `nonce` is used, given the consumer's `account` word.
    function _isNonceUsed(MarketplaceStorage storage $, address consumer, uint256 account, uint256 nonce)
        private
        view
        returns (bool)
    {
        uint256 word = nonce >> 6;
        uint256 bit = uint256(1) << (nonce & 63);
        if (word == uint64(account >> NONCE_WORD_SHIFT)) return (account >> NONCE_BITS_SHIFT) & bit != 0;
        return $.nonceBitmap[consumer][word] & bit != 0;
    }

    /// @dev Marks `nonce` used; returns the new account word. A nonce in the cached word sets
    ///      its bit there (no extra write). A nonce in a later word moves the cache there and
    ///      spills the old word to `nonceBitmap` (once per 64 sequential nonces). A nonce in an
    ///      earlier word, or beyond the 64-bit word range, is written to `nonceBitmap`.
    ///      Invariant: `nonceBitmap` holds no word in (cached word, 2^64), so moving the cache
    ///      forward never hides a used nonce.
    function _useNonce(MarketplaceStorage storage $, address consumer, uint256 account, uint256 nonce)
        private
        returns (uint256)
    {
        uint256 word = nonce >> 6;
        uint256 bit = uint256(1) << (nonce & 63);
        uint256 cached = uint64(account >> NONCE_WORD_SHIFT);
        if (word == cached) return account | (bit << NONCE_BITS_SHIFT);
        if (word > cached && word <= type(uint64).max) {
            uint256 bits = account >> NONCE_BITS_SHIFT;
            if (bits != 0) $.nonceBitmap[consumer][cached] |= bits;
            return (account & (ESCROW_MASK | CANCELS_FLAG)) | (word << NONCE_WORD_SHIFT) | (bit << NONCE_BITS_SHIFT);
        }
        $.nonceBitmap[consumer][word] |= bit;
        return account;
    }

    // ------------------------------------------------------------ Merkle tree

    /// @dev keccak256(abi.encode(leaf, fillId, consumer, market, qty)): a consumer's access.
    function _accessLeaf(uint256 leaf, bytes32 fillId, address consumer, bytes32 market, uint256 qty)
        private
        pure
        returns (bytes32 h)
    {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, leaf)
            mstore(add(p, 0x20), fillId)
            mstore(add(p, 0x40), consumer)
            mstore(add(p, 0x60), market)
            mstore(add(p, 0x80), qty)
            h := keccak256(p, 0xa0)
        }
    }

    /// @dev keccak256(abi.encode(leaf, provider, amount)): a provider's credit. Its preimage
    ///      length (96 bytes) differs from an access leaf's (160) and an inner node's (64).
    function _creditLeaf(uint256 leaf, address provider, uint256 amount) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, leaf)
            mstore(add(p, 0x20), provider)
            mstore(add(p, 0x40), amount)
            h := keccak256(p, 0x60)
        }
    }

    /// @dev Root of the first `count` (1 to nodes.length) of `nodes`, overwritten level by
    ///      level: pairs hashed with OpenZeppelin's commutative keccak (sorted pair), an odd
    ///      last node carried up unchanged, so {MerkleProof} verifies its proofs.
    function _merkleRoot(bytes32[] memory nodes, uint256 count) private pure returns (bytes32 root) {
        assembly ("memory-safe") {
            let base := add(nodes, 0x20)
            for {} gt(count, 1) {} {
                let half := shr(1, count)
                for { let i := 0 } lt(i, half) { i := add(i, 1) } {
                    let a := mload(add(base, shl(6, i)))
                    let b := mload(add(base, add(shl(6, i), 0x20)))
                    // commutative: the smaller first, as OpenZeppelin's Hashes.commutativeKeccak256
                    if gt(a, b) {
                        let t := a
                        a := b
                        b := t
                    }
                    mstore(0x00, a)
                    mstore(0x20, b)
                    mstore(add(base, shl(5, i)), keccak256(0x00, 0x40))
                }
                if and(count, 1) {
                    mstore(add(base, shl(5, half)), mload(add(base, shl(5, sub(count, 1)))))
                    half := add(half, 1)
                }
                count := half
            }
            root := mload(base)
        }
    }

    // ------------------------------------------------------------------ claims

    /// @notice Moves committed credits into their providers' withdrawable earnings, each
    ///         proved against its batch's root. Anyone may claim for anyone: the money
    ///         only ever goes to the leaf's provider. Works while paused.
    /// @dev V2: a credit already claimed (by anyone, earlier or in this same call) is skipped
    ///      with {CreditClaimSkipped}, so one claim front-run by someone else no longer
    ///      reverts a whole sweep. A claim whose proof does not verify still reverts the call
    ///      ({InvalidCreditProof}): roots never change, so an invalid proof is the caller's own
    ///      bad input, which no third party can cause. The skip is checked before the proof:
    ///      a claimed leaf is skipped whatever its proof.
    /// @return total the amount claimed by this call (skipped credits excluded)
    function claimCredits(Claim[] calldata claims) external nonReentrant returns (uint256 total) {
        uint256 n = claims.length;
        if (n == 0) revert EmptyClaims();
        MarketplaceStorage storage $ = _s();
        for (uint256 i; i < n; ++i) {
            Claim calldata c = claims[i];
            uint256 bit = uint256(1) << (c.leaf & 255);
            uint256 word = c.leaf >> 8;
            uint256 bits = $.claimed[word];
            if (bits & bit != 0) {
                emit CreditClaimSkipped(c.leaf);
                continue;
            }
            bytes32 root = $.batchRoot[c.batchId];
            if (
                root == bytes32(0)
                    || !MerkleProof.verifyCalldata(c.proof, root, _creditLeaf(c.leaf, c.provider, c.amount))
            ) revert InvalidCreditProof(c.leaf);
            $.claimed[word] = bits | bit;
            $.earnings[c.provider] += c.amount;
            total += c.amount;
            emit CreditClaimed(c.leaf, c.provider, c.amount);
        }
        $.unclaimedCredits -= total;
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
        // The escrow is the account's low 127 bits: a deposit past 2^127 - 1 reverts.
        uint256 account = $.account[msg.sender];
        uint256 escrow = (account & ESCROW_MASK) + amount;
        if (escrow > ESCROW_MASK) revert SafeCast.SafeCastOverflowedUintDowncast(127, escrow);
        $.account[msg.sender] = account + amount;
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
    ///      V2: the delay is at least {maxSettleLag} (the time the engine has to settle a
    ///      fill it accepted), the request expires {withdrawalWindow} seconds after it
    ///      matures (so a matured request cannot be kept armed to front-run settlement of
    ///      fills accepted later: while a request is live the engine does not accept orders
    ///      against the requested amount), and time the market spends paused does not count
    ///      towards the delay or the window (see {setPaused}).
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        MarketplaceStorage storage $ = _s();
        uint256 available = $.account[msg.sender] & ESCROW_MASK;
        if (amount > available) revert InsufficientEscrow(available, amount);
        uint64 readyAt = uint64(block.timestamp) + $.withdrawalDelay;
        $.pendingWithdrawal[msg.sender] = WithdrawalRequest(amount, readyAt, _pauseClock($));
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
    ///         escrow), since fills may have settled meanwhile. Works while paused for a
    ///         request that matured before the pause (a pause freezes the clock of the others).
    ///         Reverts {WithdrawalExpired} after the window: request again.
    function withdraw() external nonReentrant {
        MarketplaceStorage storage $ = _s();
        WithdrawalRequest memory req = $.pendingWithdrawal[msg.sender];
        if (req.readyAt == 0) revert NoPendingWithdrawal();
        (uint64 readyAt, uint64 expiresAt) = _withdrawalTimes($, req);
        // forge-lint: disable-next-line(block-timestamp) -- a delay of an hour; seconds of skew are irrelevant
        if (block.timestamp < readyAt) revert WithdrawalNotReady(readyAt);
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > expiresAt) revert WithdrawalExpired(expiresAt);
        delete $.pendingWithdrawal[msg.sender];
        uint256 account = $.account[msg.sender];
        uint256 amount = Math.min(req.amount, account & ESCROW_MASK);
        $.account[msg.sender] = account - amount;
        if (amount != 0) $.pat.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @dev Seconds the market has been paused since the V2 upgrade (or deployment), the
    ///      current pause included. Non-decreasing; `block.timestamp - pauseClock` (the
    ///      unpaused time) stands still while paused.
    function _pauseClock(MarketplaceStorage storage $) private view returns (uint64) {
        uint64 since = $.pausedSince;
        return $.pausedTotal + (since == 0 ? 0 : uint64(block.timestamp) - since);
    }

    /// @dev A request's readyAt and expiry in unix seconds, pushed back by every second paused
    ///      since it was made. While paused both move on with the clock, so a request not
    ///      ready at the pause stays not ready, and a ready one stays ready (and not expired).
    function _withdrawalTimes(MarketplaceStorage storage $, WithdrawalRequest memory req)
        private
        view
        returns (uint64 readyAt, uint64 expiresAt)
    {
        readyAt = req.readyAt + (_pauseClock($) - req.pauseClock);
        expiresAt = readyAt + $.withdrawalWindow;
    }

    // --------------------------------------------------------------- earnings

    /// @notice Pays the caller (a provider) all its claimed earnings ({claimCredits}). Works
    ///         while paused.
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

    /// @notice Sets the escrow withdrawal delay for requests made from now on: at least
    ///         {maxSettleLag} (V2; so a delay of 0 is refused), at most 30 days.
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

    /// @notice Emergency pause: stops settlement and deposits. Withdrawals of earnings, and of
    ///         escrow requests that matured before the pause, keep working.
    /// @dev V2 (finding L/M-3): a pause also stops the withdrawal clock. Time paused counts
    ///      neither towards a request's delay nor its window ({requestWithdrawal}), so a
    ///      consumer cannot wait out a pause, during which the broker cannot settle, and
    ///      withdraw escrow that fills already accepted are owed from. Chosen over letting
    ///      settlement go on during a pause because the pause is the emergency stop of
    ///      settlement (a bug, a bad engine) and must stay one. A matured request stays
    ///      withdrawable during a pause, so no funds that were free before it are trapped.
    ///      An order's on-chain expiry (deadline + maxSettleLag) and a nonce cancellation
    ///      keep unix time: after a long pause such fills are rejected, never charged.
    ///      Setting the current state again changes nothing.
    ///      L-5: the owner (a timelock) pauses only after its delay, so the {guardian} may
    ///      pause at once. It cannot unpause: its one power is to stop, so a guardian key
    ///      that leaks can halt the market until the owner replaces it, never restart
    ///      settlement that was stopped for a bug. The owner unpauses, best in the same
    ///      timelock batch as the fix. Anyone else gets OwnableUnauthorizedAccount.
    function setPaused(bool paused_) external {
        MarketplaceStorage storage $ = _s();
        if (msg.sender != owner()) {
            if (msg.sender != $.guardian) revert OwnableUnauthorizedAccount(msg.sender);
            if (!paused_) revert GuardianCannotUnpause();
        }
        if (paused_ != $.paused) {
            if (paused_) {
                $.pausedSince = uint64(block.timestamp);
            } else {
                uint64 since = $.pausedSince;
                // since == 0: paused by V1 code and not seen by initializeV2 (not possible
                // through upgradeToAndCall with initializeV2; then nothing is counted)
                if (since != 0) $.pausedTotal += uint64(block.timestamp) - since;
                $.pausedSince = 0;
            }
        }
        $.paused = paused_;
        emit PausedSet(paused_);
    }

    /// @notice Sets how long after an order's deadline its fill may still settle (reason 9
    ///         after it), and the delay of {invalidateNonces}. Between MIN_SETTLE_LAG (10
    ///         minutes) and MAX_SETTLE_LAG (7 days), and at most {withdrawalDelay}: the engine
    ///         settles each accepted fill within this lag, and a withdrawal request must not
    ///         mature before the fills accepted before it are settled.
    function setMaxSettleLag(uint64 lag) external onlyOwner {
        _setMaxSettleLag(lag);
    }

    /// @notice Sets how long a matured withdrawal request stays payable (1 hour to 30 days),
    ///         for requests made before and after.
    function setWithdrawalWindow(uint64 window) external onlyOwner {
        _setWithdrawalWindow(window);
    }

    /// @notice Disabled: an ownerless marketplace could never be upgraded or unpaused.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceOwnershipDisabled();
    }

    /// @notice Sets the account that may pause at once ({setPaused}); address(0) removes it.
    function setGuardian(address guardian_) external onlyOwner {
        MarketplaceStorage storage $ = _s();
        emit GuardianSet($.guardian, guardian_);
        $.guardian = guardian_;
    }

    /// @dev L-5: only the owner, and only if the owner is a TimelockController of this build
    ///      (TIMELOCK_CODEHASH) whose minimum delay is at least 2 days (0 on a devnet). Every
    ///      call such a timelock makes was scheduled in public at least its delay before;
    ///      lowering the delay is itself such a call (`updateDelay`), so an upgrade is always
    ///      announced at least that long ahead. An EOA owner (a fresh deployment,
    ///      or a proxy just upgraded from V1, whose upgrade V1's code authorised) keeps every
    ///      other owner function, ownership transfer included, and upgrades once it has
    ///      moved ownership to a timelock (transferOwnership, then the timelock's
    ///      acceptOwnership).
    function _authorizeUpgrade(address) internal view override onlyOwner {
        (bool isTimelock, uint256 delay, uint256 min) = _ownerTimelock();
        if (!isTimelock) revert OwnerNotTimelock(owner());
        if (delay < min) revert TimelockDelayTooShort(delay, min);
    }

    /// @dev Whether the owner runs this build's TimelockController, its minimum delay (0 if
    ///      not), and the least delay an upgrade needs on this chain.
    function _ownerTimelock() private view returns (bool isTimelock, uint256 delay, uint256 min) {
        address owner_ = owner();
        isTimelock = owner_.codehash == TIMELOCK_CODEHASH;
        if (isTimelock) delay = TimelockController(payable(owner_)).getMinDelay();
        min = block.chainid == DEVNET_CHAIN_ID ? 0 : MIN_TIMELOCK_DELAY;
    }

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
        if (delay < $.maxSettleLag) revert WithdrawalDelayTooShort(delay, $.maxSettleLag);
        emit WithdrawalDelaySet($.withdrawalDelay, delay);
        $.withdrawalDelay = delay;
    }

    function _setMaxSettleLag(uint64 lag) private {
        MarketplaceStorage storage $ = _s();
        uint64 max = _min64(MAX_SETTLE_LAG, $.withdrawalDelay);
        if (lag < MIN_SETTLE_LAG || lag > max) revert SettleLagOutOfRange(lag, MIN_SETTLE_LAG, max);
        emit MaxSettleLagSet($.maxSettleLag, lag);
        $.maxSettleLag = lag;
    }

    function _setWithdrawalWindow(uint64 window) private {
        if (window < MIN_WITHDRAWAL_WINDOW || window > MAX_WITHDRAWAL_WINDOW) {
            revert WithdrawalWindowOutOfRange(window, MIN_WITHDRAWAL_WINDOW, MAX_WITHDRAWAL_WINDOW);
        }
        MarketplaceStorage storage $ = _s();
        emit WithdrawalWindowSet($.withdrawalWindow, window);
        $.withdrawalWindow = window;
    }

    function _min64(uint64 a, uint64 b) private pure returns (uint64) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether governance is timelocked (L-5), i.e. upgrades are possible: the owner
    ///         runs this build's OpenZeppelin TimelockController and its minimum delay is at
    ///         least `minDelay`. Then every owner function waits at least `minDelay`, and
    ///         ownership leaves the timelock only through it.
    /// @return timelocked whether {upgradeToAndCall} would be authorised for the owner
    /// @return delay the owner timelock's minimum delay, seconds (0 if the owner is not one)
    /// @return minDelay the least delay an upgrade needs: 2 days, 0 on a devnet (chain 31337)
    function governanceTimelocked() external view returns (bool timelocked, uint256 delay, uint256 minDelay) {
        bool isTimelock;
        (isTimelock, delay, minDelay) = _ownerTimelock();
        timelocked = isTimelock && delay >= minDelay;
    }

    /// @notice The account that may pause at once (address(0): none).
    function guardian() external view returns (address) {
        return _s().guardian;
    }

    function maxSettleLag() external view returns (uint64) {
        return _s().maxSettleLag;
    }

    function withdrawalWindow() external view returns (uint64) {
        return _s().withdrawalWindow;
    }

    /// @notice Seconds the market has been paused since V2 (the current pause included);
    ///         withdrawal requests are pushed back by the part of it after they were made.
    function pauseClock() external view returns (uint64) {
        return _pauseClock(_s());
    }

    /// @notice `consumer`'s pending withdrawal with its current times: {withdraw} pays from
    ///         `readyAt` to `expiresAt` (inclusive), if the market is not paused meanwhile;
    ///         `readyAt` is the request's readyAt pushed back by the seconds paused since.
    ///         All zero if there is no request.
    function withdrawalStatus(address consumer)
        external
        view
        returns (uint256 amount, uint64 readyAt, uint64 expiresAt)
    {
        MarketplaceStorage storage $ = _s();
        WithdrawalRequest memory req = $.pendingWithdrawal[consumer];
        if (req.readyAt == 0) return (0, 0, 0);
        (readyAt, expiresAt) = _withdrawalTimes($, req);
        amount = req.amount;
    }

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
        return _s().account[consumer] & ESCROW_MASK;
    }

    /// @return amount requested (0 if none)
    /// @return readyAt unix seconds from which {withdraw} pays, as recorded at the request
    ///         (0 if none); a pause since pushes it back, see {withdrawalStatus}
    function pendingWithdrawalOf(address consumer) external view returns (uint256 amount, uint64 readyAt) {
        WithdrawalRequest storage req = _s().pendingWithdrawal[consumer];
        return (req.amount, req.readyAt);
    }

    /// @notice Claimed credits of `provider`, withdrawable now (unclaimed ones are in batch roots).
    function earningsOf(address provider) external view returns (uint256) {
        return _s().earnings[provider];
    }

    function brokerEarnings() external view returns (uint256) {
        return _s().brokerEarnings;
    }

    /// @notice Provider credits committed by batch roots and not claimed yet.
    function unclaimedCredits() external view returns (uint256) {
        return _s().unclaimedCredits;
    }

    /// @notice Batches recorded so far; batch ids run from 1 to this.
    function batchCount() external view returns (uint256) {
        return _s().batchCount;
    }

    /// @notice Leaves committed so far; the next batch's first leaf index.
    function leafCount() external view returns (uint256) {
        return _s().leafCount;
    }

    /// @notice Merkle root of batch `batchId` (zero if there is no such batch).
    function batchRoot(uint256 batchId) external view returns (bytes32) {
        return _s().batchRoot[batchId];
    }

    function isCreditClaimed(uint256 leaf) external view returns (bool) {
        return _s().claimed[leaf >> 8] & (uint256(1) << (leaf & 255)) != 0;
    }

    /// @notice Whether batch `batchId` records that `consumer` bought `qty` units of `market`
    ///         in fill `fillId`, as access leaf `leaf`: the on-chain proof of an access right.
    function verifyAccess(
        uint256 batchId,
        uint256 leaf,
        bytes32 fillId,
        address consumer,
        bytes32 market,
        uint256 qty,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _s().batchRoot[batchId];
        return
            root != bytes32(0)
                && MerkleProof.verifyCalldata(proof, root, _accessLeaf(leaf, fillId, consumer, market, qty));
    }

    function isNonceUsed(address consumer, uint256 nonce) public view returns (bool) {
        MarketplaceStorage storage $ = _s();
        return _isNonceUsed($, consumer, $.account[consumer], nonce);
    }

    /// @notice For each (consumers[i], nonces[i]): whether that nonce is used, i.e. whether the
    ///         consumer's order with that nonce settled. The engine asks before a retry: a
    ///         fill id is its order's digest, so it has exactly one (consumer, nonce).
    function noncesUsed(address[] calldata consumers, uint256[] calldata nonces)
        external
        view
        returns (bool[] memory used)
    {
        if (consumers.length != nonces.length) revert LengthMismatch(consumers.length, nonces.length);
        used = new bool[](nonces.length);
        for (uint256 i; i < nonces.length; ++i) {
            used[i] = isNonceUsed(consumers[i], nonces[i]);
        }
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
