// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IServiceManager {
    function createNewTask(bytes32 batchMerkleRoot, string calldata batchDataPointer, uint256 respondToTaskFeeLimit)
        external;
    function depositToBatcher(address account) external payable;
}

/// Load generator for benchmarks: many real createNewTask calls (so many real NewBatchV3 logs) per transaction.
contract LoadBatcher {
    IServiceManager public immutable serviceManager;

    constructor(address serviceManager_) {
        serviceManager = IServiceManager(serviceManager_);
    }

    /// Ether sent along pays for the responses to these tasks (their batcher is this contract).
    function createTasks(bytes32 seed, uint256 count, string calldata batchDataPointer) external payable {
        if (msg.value > 0) serviceManager.depositToBatcher{value: msg.value}(address(this));
        for (uint256 i = 0; i < count; i++) {
            serviceManager.createNewTask(keccak256(abi.encodePacked(seed, i)), batchDataPointer, 1e15);
        }
    }
}
